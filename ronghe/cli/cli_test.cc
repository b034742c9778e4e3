// End-to-end tests of the `ronghe` binary: exit codes, one-line errors, and a training run that
// is killed with SIGKILL and resumed to the same final weights as an uninterrupted run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/cli/test_util.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/store/run_store.h"

namespace ronghe::testing {
namespace {

bool OneLine(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

TEST(CliTest, HelpAndUsageErrors) {
  std::string home = FreshHome("usage");
  EXPECT_EQ(RunRonghe(home, {"--help"}).exit_code, 0);
  EXPECT_EQ(RunRonghe(home, {"train", "--help"}).exit_code, 0);
  EXPECT_EQ(RunRonghe(home, {"runs", "show", "--help"}).exit_code, 0);
  EXPECT_EQ(RunRonghe(home, {}).exit_code, 2);
  EXPECT_EQ(RunRonghe(home, {"train", "--bogus"}).exit_code, 2);
  EXPECT_EQ(RunRonghe(home, {"train", "--config", "/no/such.toml"}).exit_code, 2);
  EXPECT_EQ(RunRonghe(home, {"train", "--precision", "fp8", "--config",
                             SourcePath("examples/breast_cancer/mlp.toml")})
                .exit_code,
            2);
  auto r = RunRonghe(home, {"train"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--config"), std::string::npos) << r.err;
  auto v = RunRonghe(home, {"version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("ronghe 0."), std::string::npos);
}

TEST(CliTest, ConfigErrorsNameKeyAndFile) {
  std::string home = FreshHome("config");
  std::string cfg = home + "/job.toml";
  std::string text = *ReadFile(SourcePath("examples/breast_cancer/mlp.toml"));
  ASSERT_TRUE(WriteFileAtomic(cfg, text + "\n[extra]\nlearning_rate = 3\n").ok());
  auto r = RunRonghe(home, {"train", "--config", cfg});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(OneLine(r.err)) << r.err;
  EXPECT_NE(r.err.find(cfg + ": unknown key 'extra.learning_rate'"), std::string::npos) << r.err;

  r = RunRonghe(home, {"train", "--config", SourcePath("examples/breast_cancer/mlp.toml"), "--set",
                       "train.epochs=\"many\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("train.epochs: expected an integer, got a string"), std::string::npos)
      << r.err;
  // Nothing half-made: the run store holds no training run for these refusals.
  auto list = RunRonghe(home, {"runs", "list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_EQ(list.out.find("train "), std::string::npos) << list.out;
}

TEST(CliTest, TrainEvalAndRunRecords) {
  std::string home = FreshHome("train");
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/breast_cancer/mlp.toml"),
                            "--epochs", "5", "--out", home + "/bc.rhm"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("test: accuracy="), std::string::npos) << r.out;
  auto e = RunRonghe(home, {"eval", "--model", home + "/bc.rhm"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  // The eval job reproduces the training job's test metrics from the artifact alone.
  auto loaded = nn::LoadArtifact(home + "/bc.rhm");
  ASSERT_TRUE(loaded.ok());
  char want[64];
  std::snprintf(want, sizeof want, "roc_auc=%.4f",
                loaded->manifest["metrics"]["test"]["roc_auc"].get<double>());
  EXPECT_NE(e.out.find(want), std::string::npos) << e.out << " vs " << want;

  auto show = RunRonghe(home, {"runs", "show", "1", "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  auto j = nlohmann::json::parse(show.out);
  EXPECT_EQ(j["status"], "succeeded");
  EXPECT_EQ(j["kind"], "train");
  EXPECT_GT(j["resources"]["cpu_user_seconds"].get<double>(), 0);
  EXPECT_GT(j["resources"]["peak_rss_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(j["resources"]["device"], "cpu");
  int val_loss_epochs = 0;
  for (const auto& m : j["metrics"]) val_loss_epochs += m["split"] == "val" && m["name"] == "loss";
  EXPECT_EQ(val_loss_epochs, 5);
  EXPECT_GE(j["artifacts"].size(), 2u);
  auto list = RunRonghe(home, {"runs", "list"});
  EXPECT_NE(list.out.find("eval"), std::string::npos);
}

TEST(CliTest, BadInputGivesOneLineErrors) {
  std::string home = FreshHome("bad");
  ASSERT_TRUE(WriteFileAtomic(home + "/garbage.rhm", "not a model at all, just text").ok());
  auto r = RunRonghe(home, {"eval", "--model", home + "/garbage.rhm"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(OneLine(r.err)) << r.err;
  EXPECT_NE(r.err.find("garbage.rhm"), std::string::npos) << r.err;
  r = RunRonghe(home, {"runs", "show", "999"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("run 999 not found"), std::string::npos) << r.err;
  r = RunRonghe(home, {"data", "info", "cifar"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown data set 'cifar'"), std::string::npos) << r.err;
  // A home without data names the fetch command.
  std::string empty = home + "/empty";
  ASSERT_TRUE(MakeDirs(empty).ok());
  r = RunRonghe(empty, {"train", "--config", SourcePath("examples/lending_club/mlp.toml")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ronghe data fetch lending_club"), std::string::npos) << r.err;
  // A corrupt run store is refused, not overwritten.
  std::string broken = home + "/broken";
  ASSERT_TRUE(MakeDirs(broken).ok());
  ASSERT_TRUE(WriteFileAtomic(store::HomeStorePath(broken), std::string(8192, 'z')).ok());
  r = RunRonghe(broken, {"runs", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ronghe.db"), std::string::npos) << r.err;
  EXPECT_EQ(*ReadFile(store::HomeStorePath(broken)), std::string(8192, 'z'));
}

std::vector<std::pair<std::string, torch::Tensor>> Weights(const std::string& path) {
  auto a = nn::LoadArtifact(path);
  EXPECT_TRUE(a.ok()) << a.status().message();
  return a->model->NamedState();
}

TEST(CliTest, SigkilledRunResumesToTheSameWeights) {
  const std::vector<std::string> job = {"train",
                                        "--config",
                                        SourcePath("examples/breast_cancer/mlp.toml"),
                                        "--epochs",
                                        "150",
                                        "--set",
                                        "train.checkpoint_every=7",
                                        "--progress",
                                        "off"};
  std::string ref_home = FreshHome("resume-ref");
  auto ref = RunRonghe(ref_home, job);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;

  std::string home = FreshHome("resume");
  pid_t pid = SpawnRonghe(home, job);
  std::string ckpt = home + "/runs/1/checkpoint.rhc";
  // Kill as soon as a few checkpoints exist (mid-epoch checkpoints come every 7 steps).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  int seen = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (FileExists(ckpt) && ++seen > 50) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";

  auto show = RunRonghe(home, {"runs", "show", "1", "--json"});
  EXPECT_EQ(nlohmann::json::parse(show.out)["status"], "interrupted");
  auto resumed = RunRonghe(home, {"train", "--resume", "1", "--progress", "off"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed and finished"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.err.find("resuming from"), std::string::npos) << resumed.err;

  auto a = Weights(ref_home + "/runs/1/model.rhm");
  auto b = Weights(home + "/runs/1/model.rhm");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
  show = RunRonghe(home, {"runs", "show", "1", "--json"});
  auto j = nlohmann::json::parse(show.out);
  EXPECT_EQ(j["status"], "succeeded");
  int val_loss_epochs = 0;
  for (const auto& m : j["metrics"]) val_loss_epochs += m["split"] == "val" && m["name"] == "loss";
  EXPECT_EQ(val_loss_epochs, 150);  // every epoch exactly once across both processes
  // A finished run cannot be resumed again.
  auto again = RunRonghe(home, {"train", "--resume", "1"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already finished"), std::string::npos);
}

}  // namespace
}  // namespace ronghe::testing

namespace ronghe::testing {
namespace {

TEST(CliKeysTest, InitInspectAndRefusals) {
  std::string home = FreshHome("keys");
  std::string dir = home + "/consortium";
  auto r = RunRonghe(
      home, {"keys", "init", "--parties", "5", "--threshold", "3", "--bits", "2048", "--out", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(::stat((dir + "/party-3.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto share_json = nlohmann::json::parse(*ReadFile(dir + "/party-3.json"));
  std::string secret = share_json["share"];
  auto ins = RunRonghe(home, {"keys", "inspect", dir + "/party-3.json"});
  ASSERT_EQ(ins.exit_code, 0) << ins.err;
  EXPECT_NE(ins.out.find("bits:        2048"), std::string::npos) << ins.out;
  EXPECT_NE(ins.out.find("threshold:   3"), std::string::npos);
  EXPECT_NE(ins.out.find("party:       3"), std::string::npos);
  EXPECT_EQ(ins.out.find(secret.substr(0, 16)), std::string::npos) << "a secret was printed";
  EXPECT_EQ(ins.err.find(secret.substr(0, 16)), std::string::npos);
  auto pub = RunRonghe(home, {"keys", "inspect", dir + "/public.json"});
  EXPECT_EQ(pub.exit_code, 0);
  // The fingerprint is the same from both files.
  auto fp = [](const std::string& out) { return out.substr(out.find("fingerprint: ")); };
  EXPECT_EQ(fp(ins.out), fp(pub.out));
  // Existing keys are never overwritten.
  auto again = RunRonghe(home, {"keys", "init", "--out", dir});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("refusing to overwrite"), std::string::npos);
  // Bad sizes and thresholds are usage errors.
  EXPECT_EQ(RunRonghe(home, {"keys", "init", "--bits", "1024", "--out", home + "/x"}).exit_code, 2);
  EXPECT_EQ(
      RunRonghe(home, {"keys", "init", "--parties", "3", "--threshold", "4", "--out", home + "/x"})
          .exit_code,
      2);
  // A truncated key file is a one-line error naming it.
  std::string text = *ReadFile(dir + "/public.json");
  ASSERT_TRUE(WriteFileAtomic(home + "/cut.json", text.substr(0, 100)).ok());
  auto cut = RunRonghe(home, {"keys", "inspect", home + "/cut.json"});
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_TRUE(OneLine(cut.err)) << cut.err;
  EXPECT_NE(cut.err.find("cut.json"), std::string::npos);
}

TEST(CliKeysTest, CryptoSpeedJson) {
  std::string home = FreshHome("speed");
  auto r = RunRonghe(
      home, {"crypto", "speed", "--bits", "2048", "--json", "--seconds", "0.02", "--no-keygen"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  std::set<std::string> ops;
  for (const auto& x : j) {
    ops.insert(x["op"].get<std::string>());
    EXPECT_EQ(x["bits"], 2048);
    EXPECT_GT(x["ops_per_s"].get<double>(), 0);
    EXPECT_GE(x["threads"].get<int>(), 1);
  }
  EXPECT_EQ(ops, (std::set<std::string>{"encrypt", "decrypt", "add", "partial_decrypt", "prove",
                                        "verify", "verify_batch", "combine"}));
  EXPECT_EQ(RunRonghe(home, {"crypto", "speed", "--bits", "1024"}).exit_code, 2);
}

}  // namespace
}  // namespace ronghe::testing

namespace ronghe::testing {
namespace {

TEST(CliFedTest, InitWritesBundlesAndRefusesToOverwrite) {
  std::string home = FreshHome("fedinit");
  std::string out = home + "/consortium";
  auto r = RunRonghe(home, {"fed", "init", "--config", SourcePath("examples/fraud/consortium.toml"),
                            "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f :
       {"ca/ca.pem", "coordinator/cert.pem", "bank-south/share.json", "bank-west/key.pem"}) {
    EXPECT_TRUE(FileExists(out + "/" + f)) << f;
  }
  struct stat st;
  ASSERT_EQ(::stat((out + "/bank-south/share.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto ins = RunRonghe(home, {"keys", "inspect", out + "/bank-south/share.json"});
  EXPECT_NE(ins.out.find("party:       3"), std::string::npos) << ins.out;
  auto again = RunRonghe(home, {"fed", "init", "--config",
                                SourcePath("examples/fraud/consortium.toml"), "--out", out});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("refusing to overwrite"), std::string::npos);
  ASSERT_TRUE(WriteFileAtomic(home + "/bad.toml",
                              "[consortium]\nid = \"x\"\nparties = [\"a\"]\nthreshold = 2\n")
                  .ok());
  auto bad = RunRonghe(home, {"fed", "init", "--config", home + "/bad.toml", "--out", home + "/y"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("consortium.threshold"), std::string::npos) << bad.err;
}

// `ronghe fed bench`: one JSON row per scheme, the masked scheme decrypting its 11 key ciphertexts
// (the plaintext baseline nothing), a whole round run for each; unknown schemes are usage errors.
TEST(CliFedTest, BenchReportsEverySchemesPhasesAsJson) {
  std::string home = FreshHome("fedbench");
  auto r = RunRonghe(
      home, {"fed", "bench", "--params", "2000", "--schemes", "none,paillier-masked", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_array() && j.size() == 2) << r.out;
  EXPECT_EQ(j[0]["scheme"], "none");
  EXPECT_EQ(j[1]["scheme"], "paillier-masked");
  for (const auto& row : j) {
    for (const char* key : {"params", "seal_s", "accumulate_s", "decrypt_party_s", "finish_s",
                            "round_s", "upload_bytes"})
      ASSERT_TRUE(row.contains(key)) << key << " in " << row.dump();
    EXPECT_NEAR(row["params"].get<double>(), 2000, 100);
    EXPECT_GT(row["round_s"].get<double>(), 0);
  }
  EXPECT_EQ(j[0]["ciphertexts_decrypted"], 0);
  EXPECT_EQ(j[0]["decrypt_party_s"], 0.0);
  EXPECT_EQ(j[1]["ciphertexts_decrypted"], 11);
  EXPECT_GT(j[1]["decrypt_party_s"].get<double>(), 0);
  // The masked upload is the plaintext one plus the 11 ciphertexts (512 bytes each) and padding.
  EXPECT_GT(j[1]["upload_bytes"].get<int64_t>(), j[0]["upload_bytes"].get<int64_t>() + 11 * 512);
  auto bad = RunRonghe(home, {"fed", "bench", "--params", "2000", "--schemes", "none,rot13"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--schemes"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("rot13"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace ronghe::testing

namespace ronghe::testing {
namespace {

TEST(CliEdgeTest, DistilExportAndAnswerFromTheEdgeBinary) {
  const std::string home = FreshHome("cli-edge");
  auto teacher = RunRonghe(home, {"train", "--config", SourcePath("examples/grid/teacher.toml"),
                                  "--epochs", "2", "--progress", "off"});
  ASSERT_EQ(teacher.exit_code, 0) << teacher.err;
  const std::string tm = home + "/runs/1/model.rhm";
  auto d = RunRonghe(
      home, {"distill", "--teacher", tm, "--config", SourcePath("examples/grid/student.toml"),
             "--set", "train.epochs=2", "--set", "train.progress=\"off\""});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.out.find("teacher "), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("student "), std::string::npos) << d.out;
  auto show = RunRonghe(home, {"runs", "show", "2", "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\"distill\""), std::string::npos);
  EXPECT_NE(show.out.find("teacher_mape"), std::string::npos);
  // A student file may not bring its own data.
  const std::string bad = home + "/bad-student.toml";
  std::ofstream(bad) << "[model]\nkind = \"gru\"\n[data]\ndataset = \"taylor\"\n";
  auto refused = RunRonghe(home, {"distill", "--teacher", tm, "--config", bad});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("[data] is not allowed"), std::string::npos) << refused.err;

  const std::string rhe = home + "/student.rhe";
  auto ex = RunRonghe(home, {"export", "--edge", "-m", home + "/runs/2/model.rhm", "-o", rhe,
                             "--precision", "int8", "--model-version", "1.2.0"});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  EXPECT_NE(ex.out.find("test (edge int8)"), std::string::npos) << ex.out;
  auto cnn = RunRonghe(home, {"export", "-m", tm, "-o", rhe});
  EXPECT_EQ(cnn.exit_code, 2);  // no target
  // The edge binary: the header, and one forecast in megawatts.
  const std::string edge = RongheBinary() + "-edge";
  std::vector<std::string> args = {"predict", "-m", rhe};
  for (int t = 0; t < 24; ++t) {
    args.push_back(std::to_string(2600 + 20 * t));
    args.push_back("44");
  }
  std::string cmd = edge;
  for (const auto& a : args) cmd += " " + a;
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[64] = {0};
  ASSERT_NE(fgets(buf, sizeof buf, p), nullptr);
  EXPECT_EQ(pclose(p), 0);
  EXPECT_GT(std::stod(buf), 1000) << buf;
}

}  // namespace
}  // namespace ronghe::testing
