// Data-parallel training end to end, with real processes over Gloo on loopback: the weights of an
// N-process run equal a one-process run with the same global batch, a killed rank makes its peers
// fail with a message within the timeout (never hang), and the run resumes from its checkpoint.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/net.h"
#include "ronghe/cli/test_util.h"
#include "ronghe/nn/artifact.h"

namespace ronghe::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::pair<std::string, torch::Tensor>> Weights(const std::string& path) {
  auto a = nn::LoadArtifact(path);
  EXPECT_TRUE(a.ok()) << a.status().message();
  if (!a.ok()) return {};
  return a->model->NamedState();
}

double MaxDiff(const std::string& a_path, const std::string& b_path) {
  auto a = Weights(a_path), b = Weights(b_path);
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    worst = std::max(worst, (a[i].second - b[i].second).abs().max().item<double>());
  }
  return worst;
}

nlohmann::json Show(const std::string& home, int run) {
  auto r = RunRonghe(home, {"runs", "show", std::to_string(run), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out, nullptr, false);
}

void ExpectSameAsOneProcess(const std::vector<std::string>& job, int nproc) {
  std::string one = FreshHome("dp-one-" + std::to_string(nproc)),
              many = FreshHome("dp-many-" + std::to_string(nproc));
  auto a = RunRonghe(one, job);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  std::vector<std::string> dp = job;
  dp.insert(dp.end(), {"--nproc", std::to_string(nproc), "--timeout", "60"});
  auto b = RunRonghe(many, dp);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.out.find("over " + std::to_string(nproc) + " processes"), std::string::npos) << b.out;
  // Only rank 0 speaks: one summary, one run.
  EXPECT_EQ(b.out.find("run 2"), std::string::npos) << b.out;
  double diff = MaxDiff(one + "/runs/1/model.rhm", many + "/runs/1/model.rhm");
  EXPECT_LT(diff, 1e-6) << "max |w_1proc - w_" << nproc << "proc|";
  EXPECT_GT(Weights(one + "/runs/1/model.rhm").size(), 0u);
  auto rec = Show(many, 1);
  EXPECT_EQ(rec["status"], "succeeded");
  EXPECT_EQ(rec["resources"]["processes"], nproc);  // every rank's CPU time is in the record
  // Every epoch's metrics recorded once, by rank 0 alone, and the same as the lone process's.
  auto count = [](const nlohmann::json& r) {
    int n = 0;
    for (const auto& m : r["metrics"]) n += m["split"] == "val" && m["name"] == "loss";
    return n;
  };
  EXPECT_EQ(count(rec), count(Show(one, 1)));
  EXPECT_GT(count(rec), 0);
}

// Binary, Adam, pos_weight, and 341 examples in batches of 32: the last global batch (21) is cut
// 7/7/7 and the others 10/11/11 over three processes.
TEST(DataParallelTest, ThreeProcessesEqualOneProcessWithTheSameGlobalBatch) {
  ExpectSameAsOneProcess(
      {"train", "--config", SourcePath("examples/breast_cancer/mlp.toml"), "--epochs", "6", "--set",
       "model.dropout=0", "--set", "train.class_weights=\"balanced\"", "--progress", "off"},
      3);
}

// Multi-class with class weights (the weighted mean's denominator comes from the global batch),
// SGD with momentum, two processes.
TEST(DataParallelTest, TwoProcessesEqualOneProcessOnWeightedMulticlass) {
  ExpectSameAsOneProcess({"train",
                          "--config",
                          SourcePath("examples/fashion_mnist/cnn.toml"),
                          "--epochs",
                          "1",
                          "--set",
                          "model.kind=\"mlp\"",
                          "--set",
                          "model.dropout=0",
                          "--set",
                          "data.limit_train=3000",
                          "--set",
                          "train.class_weights=\"balanced\"",
                          "--set",
                          "train.optimizer=\"sgd\"",
                          "--set",
                          "train.lr=0.05",
                          "--batch-size",
                          "100",
                          "--progress",
                          "off"},
                         2);
}

// Series windows of mixed lengths in an LSTM: bucketed batches (one length each) shared out.
TEST(DataParallelTest, TwoProcessesEqualOneProcessOnMixedLengthSeries) {
  ExpectSameAsOneProcess({"train", "--config", SourcePath("examples/taylor/lstm.toml"), "--epochs",
                          "2", "--set", "data.window.lengths=[12, 24, 48]", "--progress", "off"},
                         2);
}

// Waits for `pid` at most `seconds`; returns its wait status or -1 when it is still running.
int WaitFor(pid_t pid, double seconds) {
  auto until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (Clock::now() < until) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

bool WaitForFile(const std::string& path, double seconds) {
  auto until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (Clock::now() < until) {
    if (FileExists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

const std::vector<std::string> kImaging = {"train",
                                           "--config",
                                           SourcePath("examples/imaging/multires.toml"),
                                           "--epochs",
                                           "3",
                                           "--set",
                                           "data.limit_train=1500",
                                           "--set",
                                           "data.val_fraction=0.02",
                                           "--set",
                                           "train.checkpoint_every=5",
                                           "--progress",
                                           "off"};

// Two "hosts" (one process each) meet at a rendezvous; host 1 is SIGKILLed mid-training. Host 0
// fails with a message naming the collective within the timeout; the run is resumable.
TEST(DataParallelTest, KilledRankMakesThePeerFailWithinTheTimeoutAndTheRunResumes) {
  std::string home = FreshHome("dp-kill");
  const std::string rdzv = "127.0.0.1:" + std::to_string(FreeLoopbackPort().value());
  std::vector<std::string> node0 = kImaging;
  node0.insert(node0.end(),
               {"--nnodes", "2", "--node-rank", "0", "--rdzv", rdzv, "--timeout", "20"});
  // Host 1 has no config: it trains what rank 0 sends it.
  std::vector<std::string> node1 = {"train",  "--nnodes", "2",         "--node-rank", "1",
                                    "--rdzv", rdzv,       "--timeout", "20"};
  pid_t p0 = SpawnRonghe(home, node0, "node0");
  pid_t p1 = SpawnRonghe(home, node1, "node1");
  // Kill once a checkpoint exists, i.e. mid-training.
  ASSERT_TRUE(WaitForFile(home + "/runs/1/checkpoint.rhc", 240))
      << Slurp(home + "/node0.stderr") << Slurp(home + "/node1.stderr");
  ASSERT_EQ(::kill(p1, SIGKILL), 0);
  waitpid(p1, nullptr, 0);
  auto killed_at = Clock::now();
  int st = WaitFor(p0, 40);  // timeout 20 s, plus slack for a loaded machine
  if (st == -1) {
    ::kill(p0, SIGKILL);
    waitpid(p0, nullptr, 0);
    FAIL() << "rank 0 still running 40 s after its peer died";
  }
  std::string err = Slurp(home + "/node0.stderr");
  ASSERT_TRUE(WIFEXITED(st)) << err;
  EXPECT_EQ(WEXITSTATUS(st), 1) << err;
  EXPECT_LT(Clock::now() - killed_at, std::chrono::seconds(40));
  EXPECT_NE(err.find("ronghe: error: rank 0: "), std::string::npos) << err;
  EXPECT_NE(err.find("failed on rank 0"), std::string::npos) << err;
  auto rec = Show(home, 1);
  EXPECT_EQ(rec["status"], "failed");
  EXPECT_NE(rec["error"].get<std::string>().find("all-reduce"), std::string::npos) << rec.dump();

  // --resume continues from rank 0's checkpoint, now on one host with two workers.
  auto resumed = RunRonghe(home, {"train", "--resume", "1", "--nproc", "2", "--progress", "off"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed and finished: 3 epochs"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.err.find("resuming from"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.out.find("accuracy_112px="), std::string::npos) << resumed.out;
  EXPECT_EQ(Show(home, 1)["status"], "succeeded");
}

std::vector<pid_t> Children(pid_t pid) {
  std::vector<pid_t> out;
  std::istringstream in(
      Slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"));
  pid_t c;
  while (in >> c) out.push_back(c);
  return out;
}

// Starts the imaging job under the launcher with two workers and returns once it is training
// (a checkpoint exists), with the workers' pids in *kids; -1 if that never happens.
pid_t StartTwoWorkers(const std::string& home, std::vector<pid_t>* kids) {
  std::vector<std::string> job = kImaging;
  job.insert(job.end(), {"--nproc", "2", "--timeout", "20"});
  pid_t launcher = SpawnRonghe(home, job);
  if (!WaitForFile(home + "/runs/1/checkpoint.rhc", 240)) {
    ADD_FAILURE() << "no checkpoint: " << Slurp(home + "/stderr");
    return -1;
  }
  *kids = Children(launcher);
  if (kids->size() != 2) {
    ADD_FAILURE() << kids->size() << " workers under the launcher";
    return -1;
  }
  return launcher;
}

// The single-host launcher: a worker killed under it makes the launcher exit non-zero, naming it.
TEST(DataParallelTest, LauncherReportsAKilledWorker) {
  std::string home = FreshHome("dp-launcher");
  std::vector<pid_t> kids;
  pid_t launcher = StartTwoWorkers(home, &kids);
  ASSERT_NE(launcher, -1);
  ASSERT_EQ(::kill(kids[1], SIGKILL), 0);
  int st = WaitFor(launcher, 60);
  if (st == -1) {
    ::kill(launcher, SIGKILL);
    FAIL() << "launcher still running 60 s after a worker died";
  }
  std::string err = Slurp(home + "/stderr");
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_NE(WEXITSTATUS(st), 0);
  EXPECT_NE(err.find("rank 1 (pid " + std::to_string(kids[1]) + ") was killed by signal 9"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("rank 0 (pid " + std::to_string(kids[0]) + ") exited with code 1"),
            std::string::npos)
      << err;
}

bool Gone(pid_t pid) {
  std::string stat = Slurp("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() &&
         (stat[close + 2] == 'Z' || stat[close + 2] == 'X');
}

// Workers never outlive their launcher: SIGTERM is forwarded to them; after a SIGKILL the kernel
// sends them SIGTERM (PR_SET_PDEATHSIG). The run is left interrupted, and resumable.
TEST(DataParallelTest, WorkersDieWithTheirLauncher) {
  // Orphaned workers are re-parented to this test (not to whatever PID 1 this machine runs), so
  // it can reap them and the run store sees their pids gone.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  for (int sig : {SIGTERM, SIGKILL}) {
    std::string home = FreshHome("dp-launcher-" + std::to_string(sig));
    std::vector<pid_t> kids;
    pid_t launcher = StartTwoWorkers(home, &kids);
    ASSERT_NE(launcher, -1);
    ASSERT_EQ(::kill(launcher, sig), 0);
    int st = WaitFor(launcher, 60);
    ASSERT_NE(st, -1) << "launcher still running after signal " << sig;
    auto until = Clock::now() + std::chrono::seconds(60);
    auto reaped = [&](pid_t k) {
      return waitpid(k, nullptr, WNOHANG) == k ||
             (Gone(k) && !FileExists("/proc/" + std::to_string(k)));
    };
    bool gone0 = false, gone1 = false;
    while (Clock::now() < until && !(gone0 && gone1)) {
      gone0 = gone0 || reaped(kids[0]);
      gone1 = gone1 || reaped(kids[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(gone0 && gone1) << "workers outlived the launcher (signal " << sig << ")";
    if (sig == SIGTERM) {
      ASSERT_TRUE(WIFEXITED(st));
      EXPECT_EQ(WEXITSTATUS(st), 128 + SIGTERM);
    }
    EXPECT_EQ(Show(home, 1)["status"], "interrupted") << "signal " << sig;
  }
}

TEST(DataParallelTest, LaunchErrorsAreClear) {
  std::string home = FreshHome("dp-usage");
  const std::string cfg = SourcePath("examples/breast_cancer/mlp.toml");
  auto r = RunRonghe(home, {"train", "--config", cfg, "--nnodes", "2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--rdzv"), std::string::npos) << r.err;
  r = RunRonghe(home, {"train", "--config", cfg, "--nnodes", "2", "--node-rank", "2", "--rdzv",
                       "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--node-rank 2 is outside --nnodes 2"), std::string::npos) << r.err;
  r = RunRonghe(home, {"train", "--config", cfg, "--nnodes", "2", "--rdzv", "nohost"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("HOST:PORT"), std::string::npos) << r.err;
  // A host whose rank 0 never comes gives up after its timeout, saying where it waited.
  const std::string rdzv = "127.0.0.1:" + std::to_string(FreeLoopbackPort().value());
  auto start = Clock::now();
  r = RunRonghe(home,
                {"train", "--nnodes", "2", "--node-rank", "1", "--rdzv", rdzv, "--timeout", "3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("rendezvous at " + rdzv + " failed for rank 1 of 2"), std::string::npos)
      << r.err;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
  // Mixed resolutions with a fixed-input model is refused before training.
  r = RunRonghe(home, {"train", "--config", SourcePath("examples/imaging/multires.toml"), "--set",
                       "model.kind=\"mlp\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.kind: images of mixed resolutions"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ronghe::testing
