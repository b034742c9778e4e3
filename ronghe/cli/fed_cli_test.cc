// The federated runtime as separate processes, as a consortium would run it: `fed init`, one
// coordinator and five participants over gRPC with mutual TLS on loopback, a participant that
// dies mid-run, and the coordinator killed with SIGKILL and restarted.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/net.h"
#include "ronghe/cli/test_util.h"
#include "ronghe/store/run_store.h"

namespace ronghe {
namespace {

using testing::FreshHome;
using testing::RunRonghe;
using testing::Slurp;
using testing::SourcePath;
using testing::SpawnRonghe;
using testing::WaitForExit;

int FreePort() { return FreeLoopbackPort().value(); }

const std::vector<std::string> kBanks = {"bank-northeast", "bank-midwest", "bank-south",
                                         "bank-west", "bank-central"};

std::string InitConsortium(const std::string& home) {
  std::string text = ReadFile(SourcePath("examples/fraud/consortium.toml")).value();
  const std::string from = "127.0.0.1:50051";
  text.replace(text.find(from), from.size(), "127.0.0.1:" + std::to_string(FreePort()));
  EXPECT_TRUE(WriteFileAtomic(home + "/consortium.toml", text).ok());
  auto r = RunRonghe(
      home, {"fed", "init", "--config", home + "/consortium.toml", "--out", home + "/consortium"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return home + "/consortium";
}

// The coordinator is killed (SIGKILL) after round 2, restarted, stopped by SIGTERM after round 3
// (it drains: exit 0, run interrupted), a bank leaves on SIGTERM (exit 0), and the third start
// finishes the run: every round's metrics exactly once.
TEST(FedCliTest, CoordinatorKilledMidRunResumesAndParticipantsReconnectByThemselves) {
  std::string home = FreshHome("fed_cli_kill");
  std::string bundles = InitConsortium(home);
  const std::string fed = SourcePath("examples/fraud/federation.toml");
  std::vector<std::string> coord = {"fed",      "coordinator",
                                    "--config", fed,
                                    "--bundle", bundles + "/coordinator",
                                    "--set",    "federation.rounds=6",
                                    "--set",    "model.hidden=[8]"};
  pid_t c1 = SpawnRonghe(home, coord, "coordinator-1");
  std::map<std::string, pid_t> banks;
  for (const auto& b : kBanks) {
    std::vector<std::string> args = {"fed", "participant", "--config",
                                     fed,   "--bundle",    bundles + "/" + b};
    if (b == "bank-central") args.insert(args.end(), {"--crash-at-round", "3"});
    banks[b] = SpawnRonghe(home, args, b);
  }
  auto store = store::OpenHomeStore(home);
  ASSERT_TRUE(store.ok());
  int64_t run_id = 0;
  auto wait_for_round = [&](int64_t round, const std::string& log) {
    bool done = false;
    for (int i = 0; i < 1200 && !done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto runs = (*store)->ListRuns(5, "fed");
      if (!runs.ok() || runs->empty()) continue;
      run_id = runs->front().id;
      auto run = (*store)->GetRun(run_id);
      for (const auto& m : run->metrics) done |= m.step == round;
    }
    ASSERT_TRUE(done) << Slurp(home + "/" + log + ".stderr");
  };
  // Kill the coordinator as soon as round 2 is in the store.
  wait_for_round(2, "coordinator-1");
  ::kill(c1, SIGKILL);
  EXPECT_EQ(WaitForExit(c1, 10), -SIGKILL);
  EXPECT_EQ((*store)->GetRun(run_id)->status, "interrupted");

  // The same command again: it finds the interrupted run and resumes after round 2. SIGTERM after
  // round 3: it drains (the round in flight is abandoned, nothing of it applied) and exits 0.
  pid_t c2 = SpawnRonghe(home, coord, "coordinator-2");
  wait_for_round(3, "coordinator-2");
  ::kill(c2, SIGTERM);
  int rc = WaitForExit(c2, 60);
  std::string out = Slurp(home + "/coordinator-2.stdout");
  EXPECT_EQ(rc, 0) << Slurp(home + "/coordinator-2.stderr");
  EXPECT_NE(out.find("stopped by signal after round"), std::string::npos) << out;
  EXPECT_EQ((*store)->GetRun(run_id)->status, "interrupted");
  // A bank leaves on SIGTERM: exit 0.
  ::kill(banks["bank-northeast"], SIGTERM);
  EXPECT_EQ(WaitForExit(banks["bank-northeast"], 60), 0) << Slurp(home + "/bank-northeast.stderr");
  banks.erase("bank-northeast");

  // The third start resumes after the last committed round and finishes.
  pid_t c3 = SpawnRonghe(home, coord, "coordinator-3");
  rc = WaitForExit(c3, 300);
  out = Slurp(home + "/coordinator-3.stdout");
  ASSERT_EQ(rc, 0) << Slurp(home + "/coordinator-3.stderr");
  EXPECT_NE(out.find("run " + std::to_string(run_id) + ": 6 rounds (resumed)"), std::string::npos)
      << out;
  for (const auto& [name, pid] : banks) {
    int prc = WaitForExit(pid, 60);
    if (name == "bank-central") {
      EXPECT_EQ(prc, -SIGKILL) << name;  // its crash drill
    } else {
      EXPECT_EQ(prc, 0) << name << ": " << Slurp(home + "/" + name + ".stderr");
    }
  }
  auto run = (*store)->GetRun(run_id);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->status, "succeeded");
  std::map<int64_t, double> contributors;
  std::map<int64_t, int> losses;
  for (const auto& m : run->metrics) {
    if (m.name == "contributors") contributors[m.step] = m.value;
    if (m.name == "train_loss") ++losses[m.step];
  }
  EXPECT_EQ(contributors[1], 5);
  EXPECT_EQ(contributors[2], 5);
  // bank-central died in round 3 and stayed away; bank-northeast left before the third start.
  EXPECT_EQ(contributors[6], 3);
  for (int64_t r = 1; r <= 6; ++r)
    EXPECT_EQ(losses[r], 1) << "round " << r;  // once each, none lost
  // The federated model is an ordinary artifact: `ronghe eval` rebuilds its inputs.
  std::string artifact;
  for (const auto& a : run->artifacts)
    if (a.kind == "model") artifact = a.path;
  ASSERT_FALSE(artifact.empty());
  auto ev = RunRonghe(home, {"eval", "--model", artifact});
  EXPECT_EQ(ev.exit_code, 0) << ev.err;
  EXPECT_NE(ev.out.find("roc_auc"), std::string::npos) << ev.out;
}

TEST(FedCliTest, WrongBundleAndWrongConfigAreRefusedClearly) {
  std::string home = FreshHome("fed_cli_bad");
  std::string bundles = InitConsortium(home);
  const std::string fed = SourcePath("examples/fraud/federation.toml");
  auto r = RunRonghe(home,
                     {"fed", "participant", "--config", fed, "--bundle", bundles + "/coordinator"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("not a participant's"), std::string::npos) << r.err;
  r = RunRonghe(home, {"fed", "coordinator", "--config", fed, "--bundle", bundles + "/coordinator",
                       "--set", "federation.rounds_typo=3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("federation.rounds_typo"), std::string::npos) << r.err;
  r = RunRonghe(home, {"fed", "coordinator", "--config", fed, "--bundle", bundles + "/coordinator",
                       "--set", "federation.secure_aggregation=\"rot13\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("secure_aggregation"), std::string::npos) << r.err;
  // A share file others can read is refused before anything starts.
  ASSERT_EQ(::chmod((bundles + "/bank-west/share.json").c_str(), 0644), 0);
  r = RunRonghe(home, {"fed", "participant", "--config", fed, "--bundle", bundles + "/bank-west"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("share.json: group or others can access the key share (mode 0644)"),
            std::string::npos)
      << r.err;
}

// A new user's first `fed demo` before the data is fetched: it fails at once, names the data set
// and the command that fetches it, and starts nothing (no key ceremony, no processes).
TEST(FedCliTest, DemoWithoutItsDataFailsBeforeStartingAnything) {
  std::string home = std::filesystem::temp_directory_path().string() +
                     "/ronghe-test-fed_demo_nodata-" + std::to_string(::getpid());
  std::filesystem::remove_all(home);
  std::filesystem::create_directories(home);
  auto r = RunRonghe(home, {"fed", "demo", "--workdir", home + "/work"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("lending_club"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ronghe data fetch lending_club"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(home + "/work"))
      << "the demo started before checking its data";
}

// Banks that cannot start (here: a label column their data does not have) end the demo at once,
// naming the bank and its error, instead of leaving the coordinator waiting for nobody.
TEST(FedCliTest, DemoFailsAtOnceWhenItsBanksExit) {
  std::string home = FreshHome("fed_demo_banks");
  std::string examples = home + "/examples";
  std::filesystem::create_directories(examples + "/fraud");
  std::filesystem::copy_file(SourcePath("examples/fraud/consortium.toml"),
                             examples + "/fraud/consortium.toml");
  std::string fed = ReadFile(SourcePath("examples/fraud/federation.toml")).value();
  const std::string label = "label = \"Class\"";
  ASSERT_NE(fed.find(label), std::string::npos);
  fed.replace(fed.find(label), label.size(), "label = \"NoSuchColumn\"");
  ASSERT_TRUE(WriteFileAtomic(examples + "/fraud/federation.toml", fed).ok());
  // Were the demo to wait for the coordinator instead, it would report the coordinator's join
  // timeout (600 s), which names no bank and no column.
  auto r = RunRonghe(
      home, {"fed", "demo", "--rounds", "2", "--examples", home, "--workdir", home + "/work"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("bank-"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("exited with code"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("NoSuchColumn"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ronghe
