// `ronghe stream` as the acceptance check runs it: `stream demo --quick --json` end to end with
// real processes on loopback (two lines, the held-out class appearing, a simulated reviewer,
// adaptation, release through a hub of signed models, every line following), then the review, label
// and status commands on the store the demo's lines wrote, and the errors a wrong line.toml gets.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "ronghe/cli/test_util.h"

namespace ronghe::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(StreamCliTest, QuickDemoLearnsTheNewDefectAndEveryLineFollowsWithExactAccounting) {
  const std::string home = FreshHome("stream-demo");
  const std::string work = home + "/demo";
  auto r =
      RunRonghe(home, {"stream", "demo", "--quick", "--work", work, "--json", home + "/demo.json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json j = json::parse(Slurp(home + "/demo.json"));
  EXPECT_EQ(j["lines"], 2);
  EXPECT_EQ(j["cameras"], 40);
  int64_t in = 0;
  for (auto it = j["per_line"].begin(); it != j["per_line"].end(); ++it) {
    const json& l = it.value();
    EXPECT_EQ(l["frames_in"].get<int64_t>(),
              l["frames_decided"].get<int64_t>() + l["frames_dropped"].get<int64_t>())
        << it.key();
    EXPECT_EQ(l["version"], j["released_version"]) << it.key();
    in += l["frames_in"].get<int64_t>();
  }
  EXPECT_EQ(j["frames_in"].get<int64_t>(), in);
  EXPECT_GT(in, 1000);
  EXPECT_LE(j["old_accuracy_before"].get<double>() - j["old_accuracy_after"].get<double>(), 0.01);
  EXPECT_LE(j["seconds_label_to_all_lines"].get<double>(), 60);
  EXPECT_GT(j["new_class_recall"].get<double>(), 0.3);
  EXPECT_GE(j["released_version"].get<int64_t>(), 2);
  // Shipped through the hub: the lines' repository loads only what the hub signed, and the new
  // version carries its evidence and says who signed it.
  EXPECT_NE(Slurp(work + "/repo/repository.toml").find("require = \"signed\""), std::string::npos);
  const std::string released =
      work + "/repo/parts/" + std::to_string(j["released_version"].get<int64_t>());
  json origin = json::parse(Slurp(released + "/hub.json"));
  EXPECT_EQ(origin["name"], "parts");
  EXPECT_TRUE(origin["evidence"].contains("targets"));
  EXPECT_NE(Slurp(work + "/line-2.log").find("signed by publisher"), std::string::npos);

  // The store the lines shared: every line stopped on the released version; the release, and the
  // labelled frames, are there.
  const std::string lines_home = work + "/home";
  r = RunRonghe(lines_home, {"stream", "status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json st = json::parse(r.out);
  ASSERT_EQ(st["lines"].size(), 2u);
  for (const auto& l : st["lines"]) {
    EXPECT_EQ(l["state"], "stopped");
    EXPECT_EQ(l["version"], j["released_version"]);
  }
  ASSERT_GE(st["releases"].size(), 1u);
  EXPECT_EQ(st["releases"].back()["status"], "released");
  EXPECT_EQ(st["releases"].back()["new_class"], "Ankle boot");
  r = RunRonghe(lines_home,
                {"stream", "review", "--model", "parts", "--all", "--json", "--limit", "100000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json review = json::parse(r.out);
  ASSERT_FALSE(review.empty());
  int64_t boots = 0;
  for (const auto& f : review) boots += f["label"] == "Ankle boot";
  EXPECT_GE(boots, 10);

  // Labelling by hand: an unknown frame id is refused and labels nothing.
  const int64_t id = review.front()["id"];
  r = RunRonghe(lines_home,
                {"stream", "label", "--class", "Sneaker", std::to_string(id), "999999"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no frame 999999"), std::string::npos) << r.err;
  r = RunRonghe(lines_home, {"stream", "label", "--class", "Sneaker", std::to_string(id)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = RunRonghe(lines_home, {"stream", "review", "--model", "parts", "--all", "--json", "--limit",
                             "100000", "--export", home + "/frames"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(home + "/frames/" + std::to_string(id) + ".pgm"));
  EXPECT_EQ(Slurp(home + "/frames/" + std::to_string(id) + ".pgm").substr(0, 9), "P5\n28 28\n");
}

// A line whose classifier comes from a hub: installed, verified, into an empty repository; the
// cameras end after their frames and the line stops by itself with every frame accounted for.
TEST(StreamCliTest, ALineTakesItsClassifierFromAHub) {
  const std::string home = FreshHome("stream-hub");
  auto run = [&](const std::vector<std::string>& args) { return RunRonghe(home, args); };
  ASSERT_EQ(run({"hub", "keygen", "--out", home + "/keys"}).exit_code, 0);
  ASSERT_EQ(
      run({"hub", "init", "--hub", home + "/hub", "--root-key", home + "/keys/hub.key"}).exit_code,
      0);
  std::ofstream(home + "/card.md") << "# parts\n";
  auto r =
      run({"hub", "publish", "--hub", home + "/hub", "--model",
           SourcePath("examples/inspection/repo/parts/1/model.rhm"), "--name", "parts", "--version",
           "1.0.0", "--card", home + "/card.md", "--key", home + "/keys/hub.key"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ofstream(home + "/line.toml")
      << "[line]\nname = \"l\"\nmodel = \"parts\"\nrepo = \"models\"\nhub = \"hub\"\n"
         "[cameras.c]\nkind = \"images\"\ndataset = \"fashion-mnist\"\ncount = 2\nfps = 50\n"
         "limit = 20\n";
  r = run({"stream", "run", "--config", home + "/line.toml", "--json", home + "/line.json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("installed parts@1.0.0"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(home + "/models/parts/1/hub.json"));
  json j = json::parse(Slurp(home + "/line.json"));
  EXPECT_EQ(j["frames_in"], 40);
  EXPECT_EQ(j["frames_decided"].get<int64_t>() + j["frames_dropped"].get<int64_t>(), 40);
  for (const auto& c : j["cameras"]) EXPECT_EQ(c["state"], "ended");
  // Started again: the installed copy is used, not installed twice.
  r = run({"stream", "run", "--config", home + "/line.toml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("using parts@1.0.0"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(home + "/models/parts/2"));
}

// A line killed (SIGKILL) while a new version rolls out comes back on the newest version.
TEST(StreamCliTest, ALineKilledMidRolloutComesBackOnTheNewVersion) {
  const std::string home = FreshHome("stream-kill");
  const std::string repo = home + "/models";
  fs::create_directories(repo + "/parts/1");
  fs::copy_file(SourcePath("examples/inspection/repo/parts/1/model.rhm"),
                repo + "/parts/1/model.rhm");
  std::ofstream(repo + "/parts/config.toml") << "[versions]\npolicy = \"latest\"\nlatest = 3\n";
  std::ofstream(home + "/line.toml")
      << "[line]\nname = \"k\"\nmodel = \"parts\"\nrepo = \"models\"\nwatch_s = 0.1\n"
         "[cameras.c]\nkind = \"images\"\ndataset = \"fashion-mnist\"\ncount = 4\nfps = 20\n";
  pid_t line = SpawnRonghe(home, {"stream", "run", "--config", home + "/line.toml"}, "line");
  for (int i = 0; i < 600 && Slurp(home + "/line.stdout").find("cameras on parts version 1") ==
                                 std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(Slurp(home + "/line.stdout").find("version 1"), std::string::npos)
      << Slurp(home + "/line.stderr");
  // Version 2 arrives (one rename, as a release does); the line is killed while it takes it up.
  fs::create_directories(repo + "/.tmp");
  fs::copy_file(SourcePath("examples/inspection/repo/parts/1/model.rhm"), repo + "/.tmp/model.rhm");
  fs::rename(repo + "/.tmp", repo + "/parts/2");
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ::kill(line, SIGKILL);
  EXPECT_EQ(WaitForExit(line, 30), -SIGKILL);
  auto r = RunRonghe(home, {"stream", "run", "--config", home + "/line.toml", "--duration", "2",
                            "--json", home + "/line.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(Slurp(home + "/line.json"));
  EXPECT_EQ(j["version"], 2);
  EXPECT_FALSE(j["pinned"].get<bool>());
  EXPECT_EQ(j["frames_in"].get<int64_t>(),
            j["frames_decided"].get<int64_t>() + j["frames_dropped"].get<int64_t>());
}

TEST(StreamCliTest, AWrongLineConfigIsRefusedNamingTheKey) {
  const std::string home = FreshHome("stream-config");
  std::ofstream(home + "/line.toml")
      << "[line]\nname = \"l\"\nmodel = \"parts\"\nrepo = \""
      << SourcePath("examples/inspection/repo")
      << "\"\n[cameras.c]\nkind = \"images\"\ndataset = \"fashion-mnist\"\nfsp = 5\n";
  auto r = RunRonghe(home, {"stream", "run", "--config", home + "/line.toml"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("cameras.c.fsp"), std::string::npos) << r.err;
  std::ofstream(home + "/line.toml", std::ios::trunc)
      << "[line]\nname = \"l\"\nmodel = \"parts\"\nrepo = \""
      << SourcePath("examples/inspection/repo") << "\"\n[cameras.c]\nkind = \"webcam\"\n";
  r = RunRonghe(home, {"stream", "run", "--config", home + "/line.toml"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("'webcam' is not images, video or rtsp"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ronghe::testing
