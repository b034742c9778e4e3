// `ronghe fed demo`: the 5-bank fraud consortium, each bank a separate process on loopback.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/net.h"
#include "ronghe/data/split.h"
#include "ronghe/data/source.h"
#include "ronghe/fed/consortium.h"
#include "ronghe/fed/job.h"
#include "ronghe/fed/local_train.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/nn/tensor_file.h"
#include "ronghe/store/run_store.h"
#include "ronghe/train/metrics.h"

extern char** environ;

namespace ronghe::fed {

namespace {

using Clock = std::chrono::steady_clock;

// Starts this binary with `args`; output goes to `log` ("" = inherit).
Result<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  std::string self = "/proc/self/exe";
  argv.push_back(self.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!log.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Unavailable("cannot start " + args[0] + " " + args[1]);
  return pid;
}

// Exit status, or -signal; waits at most `timeout_s`.
Result<int> Wait(pid_t pid, double timeout_s) {
  auto until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (true) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    if (Clock::now() > until) return DeadlineExceeded("process " + std::to_string(pid) + " still running");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

struct BankMetrics {
  std::string name;
  int64_t examples = 0;
  double recall = 0, fpr = 0, roc_auc = 0, pr_auc = 0;
  nlohmann::json ToJson() const {
    return {{"name", name}, {"examples", examples}, {"recall", recall}, {"fpr", fpr}, {"roc_auc", roc_auc}, {"pr_auc", pr_auc}};
  }
};

std::vector<float> Scores(nn::Model& m, const data::TensorData& d) {
  torch::NoGradGuard g;
  m.SetTraining(false);
  at::Tensor p = torch::sigmoid(m.Forward(d.x).squeeze(1)).contiguous();
  return std::vector<float>(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
}

std::vector<int64_t> Labels(const data::TensorData& d) {
  at::Tensor y = d.y.contiguous();
  return std::vector<int64_t>(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel());
}

// The operating point: flag the riskiest 10% of the validation set's good loans (FPR 10% on
// validation); recall and FPR are then measured on the test set at that score threshold.
constexpr double kTargetFpr = 0.10;

BankMetrics Measure(nn::Model& m, const data::LoadedData& d) {
  BankMetrics r;
  auto vs = Scores(m, d.val);
  auto vy = Labels(d.val);
  std::vector<float> neg;
  for (size_t i = 0; i < vs.size(); ++i)
    if (vy[i] == 0) neg.push_back(vs[i]);
  std::sort(neg.begin(), neg.end());
  float thr = neg.empty() ? 0.5f : neg[static_cast<size_t>(std::floor((1 - kTargetFpr) * (neg.size() - 1)))];
  auto ts = Scores(m, d.test);
  auto ty = Labels(d.test);
  int64_t tp = 0, p = 0, fp = 0, n = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    bool flag = ts[i] > thr;
    if (ty[i] == 1) ++p, tp += flag;
    else ++n, fp += flag;
  }
  r.recall = p ? static_cast<double>(tp) / p : 0;
  r.fpr = n ? static_cast<double>(fp) / n : 0;
  r.roc_auc = train::RocAuc(ts, ty);
  r.pr_auc = train::AveragePrecision(ts, ty);
  return r;
}

}  // namespace

Status RunFedDemo(const DemoRequest& req) {
  const auto t0 = Clock::now();
  const std::string fraud = req.source_dir + "/examples/fraud";
  const std::string fed_file = fraud + "/federation.toml";
  std::string work = req.workdir;
  if (work.empty()) {
    char stamp[32];
    std::time_t now = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
    work = req.home + "/fed-demo/" + stamp + "-" + std::to_string(::getpid());
  }

  // 1. The consortium, on a free loopback port.
  ASSIGN_OR_RETURN(int port, FreeLoopbackPort());
  ASSIGN_OR_RETURN(Config ccfg, Config::Load(fraud + "/consortium.toml"));
  RETURN_IF_ERROR(ccfg.ApplyOverride("coordinator.address=\"127.0.0.1:" + std::to_string(port) + "\""));
  ConsortiumOptions co;
  RETURN_IF_ERROR(ParseConsortiumOptions(ccfg, &co));
  RETURN_IF_ERROR(ccfg.CheckNoUnknownKeys());
  // The federation file's settings, for the baselines and the table.
  ASSIGN_OR_RETURN(Config fcfg, Config::Load(fed_file));
  int64_t rounds = 10;
  RETURN_IF_ERROR(fcfg.Get("federation.rounds", &rounds));
  if (req.rounds > 0) rounds = req.rounds;
  int64_t drop_round = req.drop_at_round > 0 ? req.drop_at_round : (rounds + 1) / 2;
  if (!req.drop_party.empty()) {
    if (std::find(co.parties.begin(), co.parties.end(), req.drop_party) == co.parties.end()) {
      return InvalidArgument("--drop-party: '" + req.drop_party + "' is not a party of " + co.id);
    }
    if (drop_round < 1 || drop_round > rounds) return InvalidArgument("--drop-at-round: must be between 1 and " + std::to_string(rounds));
    if (static_cast<int>(co.parties.size()) - 1 < co.threshold) return InvalidArgument("--drop-party: too few parties would remain");
  }

  RETURN_IF_ERROR(MakeDirs(work, 0700));
  std::printf("== ronghe fed demo: %zu banks, any %d decrypt; work folder %s\n", co.parties.size(), co.threshold, work.c_str());
  std::printf("-- key ceremony (%d-bit threshold Paillier) and mutual-TLS certificates\n", co.key_bits);
  std::fflush(stdout);
  RETURN_IF_ERROR(InitConsortium(co, ccfg.ToToml(), work + "/consortium"));

  // 2. Two federations with the same seed: threshold Paillier, then the plaintext baseline.
  struct RunOut {
    std::string artifact;
    int64_t run_id = 0;
    double seconds = 0;
  };
  auto federate = [&](const std::string& mode) -> Result<RunOut> {
    RunOut out;
    const auto start = Clock::now();
    const std::string name = "fraud-demo-" + mode;
    std::vector<std::string> common = {"--home", req.home, "fed"};
    std::vector<std::string> cargs = common;
    for (const std::string& a : std::vector<std::string>{
             "coordinator", "--config", fed_file, "--bundle", work + "/consortium/coordinator", "--new", "--set",
             "job.name=\"" + name + "\"", "--set", "federation.secure_aggregation=\"" + mode + "\"", "--set",
             "federation.rounds=" + std::to_string(rounds), "--set", "federation.min_participants=3",
             "--set", "federation.keep_rounds=0"})
      cargs.push_back(a);
    std::printf("-- %s federation: coordinator and %zu bank processes on 127.0.0.1:%d%s\n",
                mode == "paillier" ? "secure (threshold Paillier)" : "plaintext FedAvg baseline", co.parties.size(), port,
                req.drop_party.empty() ? "" : (", " + req.drop_party + " dies in round " + std::to_string(drop_round)).c_str());
    std::fflush(stdout);
    // The secure run's coordinator shows its progress on the terminal; everything else is logged.
    ASSIGN_OR_RETURN(pid_t coord, Spawn(cargs, mode == "paillier" ? "" : work + "/coordinator-" + mode + ".log"));
    std::vector<pid_t> banks;
    for (const auto& p : co.parties) {
      std::vector<std::string> a = common;
      for (const std::string& x : std::vector<std::string>{"participant", "--config", fed_file, "--bundle", work + "/consortium/" + p})
        a.push_back(x);
      if (p == req.drop_party) {
        a.push_back("--crash-at-round");
        a.push_back(std::to_string(drop_round));
      }
      auto pid = Spawn(a, work + "/" + p + "-" + mode + ".log");
      if (!pid.ok()) {
        ::kill(coord, SIGTERM);
        for (pid_t b : banks) ::kill(b, SIGTERM);
        return pid.status();
      }
      banks.push_back(*pid);
    }
    auto rc = Wait(coord, 600);
    Status bad;
    if (!rc.ok() || *rc != 0) {
      ::kill(coord, SIGKILL);
      bad = Unavailable("the " + mode + " coordinator failed (exit " + (rc.ok() ? std::to_string(*rc) : "timeout") +
                        "); logs in " + work);
    }
    for (size_t i = 0; i < banks.size(); ++i) {
      auto r = Wait(banks[i], bad.ok() ? 30 : 0.1);
      if (!r.ok()) {
        ::kill(banks[i], SIGKILL);
        (void)Wait(banks[i], 5);
        if (bad.ok()) bad = Unavailable(co.parties[i] + " did not finish; log: " + work + "/" + co.parties[i] + "-" + mode + ".log");
      } else if (*r != 0 && co.parties[i] != req.drop_party && bad.ok()) {
        bad = Unavailable(co.parties[i] + " failed (exit " + std::to_string(*r) + "); log: " + work + "/" + co.parties[i] + "-" + mode + ".log");
      }
    }
    RETURN_IF_ERROR(bad);
    ASSIGN_OR_RETURN(auto store, store::RunStore::Open(req.home + "/ronghe.db"));
    ASSIGN_OR_RETURN(auto runs, store->ListRuns(20, "fed"));
    for (const auto& r : runs) {
      if (r.name == name && r.status == "succeeded") {
        out.run_id = r.id;
        for (const auto& a : r.artifacts)
          if (a.kind == "model") out.artifact = a.path;
        break;
      }
    }
    if (out.artifact.empty()) return Internal("the " + mode + " run left no model artifact");
    out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return out;
  };
  ASSIGN_OR_RETURN(RunOut secure, federate("paillier"));
  ASSIGN_OR_RETURN(RunOut plain, federate("none"));

  // 3. The same data the banks hold, for the local-only baselines and the shared test set.
  data::DataOptions dopts;
  RETURN_IF_ERROR(data::ParseDataOptions(fcfg, &dopts));
  std::string column, grouping;
  RETURN_IF_ERROR(fcfg.Get("partition.column", &column));
  RETURN_IF_ERROR(fcfg.Get("partition.groups", &grouping));
  dopts.group_column = column;
  ASSIGN_OR_RETURN(data::LoadedData all, data::LoadData(dopts, req.home));
  ASSIGN_OR_RETURN(auto groups, data::NamedGrouping(grouping));

  ASSIGN_OR_RETURN(nn::LoadedArtifact fed_model, nn::LoadArtifact(secure.artifact));
  ASSIGN_OR_RETURN(nn::LoadedArtifact plain_model, nn::LoadArtifact(plain.artifact));
  BankMetrics federated = Measure(*fed_model.model, all);
  federated.name = "federated";
  federated.examples = all.train.size();
  std::vector<float> ws = Flatten(fed_model.model->NamedState()), wp = Flatten(plain_model.model->NamedState());
  double max_diff = 0;
  for (size_t i = 0; i < ws.size() && i < wp.size(); ++i) max_diff = std::max(max_diff, std::abs(static_cast<double>(ws[i]) - wp[i]));
  double bound = 0;
  for (const auto& h : fed_model.manifest["federation"]["history"]) bound += h.value("error_bound", 0.0);
  // Round 1 is where both runs aggregate identical updates (same initial model, same local
  // training), so there the difference is the quantisation alone and must be within the bound.
  // Later rounds train from models that already differ, and ReLU networks amplify that.
  double first_diff = 0, first_bound = fed_model.manifest["federation"]["history"][0].value("error_bound", 0.0);
  {
    ASSIGN_OR_RETURN(auto store, store::RunStore::Open(req.home + "/ronghe.db"));
    std::vector<std::vector<float>> w1;
    for (int64_t id : {secure.run_id, plain.run_id}) {
      ASSIGN_OR_RETURN(auto cp, store->GetCheckpoint(id, 1));
      if (!cp) return Internal("run " + std::to_string(id) + " kept no checkpoint of round 1");
      ASSIGN_OR_RETURN(nn::TensorFile f, nn::DecodeTensorFile(cp->state, "round 1 checkpoint"));
      ASSIGN_OR_RETURN(at::Tensor t, f.Get("weights"));
      w1.emplace_back(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    }
    for (size_t i = 0; i < w1[0].size() && i < w1[1].size(); ++i) {
      first_diff = std::max(first_diff, std::abs(static_cast<double>(w1[0][i]) - w1[1][i]));
    }
  }

  // Local-only: each bank trains the same model alone for as many epochs as the federation ran.
  int64_t epochs = 1, batch = 64, seed = 1;
  double lr = 1e-3, wd = 0;
  std::string opt = "adam", cw = "none";
  fcfg.Get("local.epochs", &epochs).ok();
  fcfg.Get("local.batch_size", &batch).ok();
  fcfg.Get("local.lr", &lr).ok();
  fcfg.Get("local.weight_decay", &wd).ok();
  fcfg.Get("local.optimizer", &opt).ok();
  fcfg.Get("local.class_weights", &cw).ok();
  fcfg.Get("federation.seed", &seed).ok();
  v1::LocalSettings ls;
  ls.set_epochs(epochs * rounds);
  ls.set_batch_size(batch);
  ls.set_lr(lr);
  ls.set_weight_decay(wd);
  ls.set_optimizer(opt);
  ls.set_class_weights(cw);
  std::vector<BankMetrics> local;
  for (const auto& p : co.parties) {
    std::string part = p.substr(p.rfind('-') + 1);
    std::vector<int64_t> keep;
    for (size_t i = 0; i < all.train_groups.size(); ++i) {
      std::string g = groups.count(all.train_groups[i]) ? groups.at(all.train_groups[i]) : all.train_groups[i];
      std::string a = g, b = part;
      for (auto& c : a) c = static_cast<char>(std::tolower(c));
      for (auto& c : b) c = static_cast<char>(std::tolower(c));
      if (a == b) keep.push_back(static_cast<int64_t>(i));
    }
    data::LoadedData mine = all;
    at::Tensor sel = torch::tensor(keep, torch::kInt64);
    mine.train = {all.train.x.index_select(0, sel), all.train.y.index_select(0, sel)};
    torch::manual_seed(static_cast<uint64_t>(seed));
    ASSIGN_OR_RETURN(auto model, nn::Model::Create(fed_model.model->config()));
    ASSIGN_OR_RETURN(LocalTrainResult lt, LocalTrain(*model, mine.train, mine.task, mine.num_classes, ls, static_cast<uint64_t>(seed)));
    (void)lt;
    BankMetrics m = Measure(*model, all);
    m.name = p;
    m.examples = static_cast<int64_t>(keep.size());
    local.push_back(m);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();

  // 4. The table.
  const auto test_labels = Labels(all.test);
  const double bad_rate = test_labels.empty() ? 0.0 : 100.0 * std::count(test_labels.begin(), test_labels.end(), 1) / test_labels.size();
  std::printf("\nHeld-out test set: %lld loans (%.1f%% bad), no bank trains on it. Operating point: flag the "
              "riskiest %.0f%% of the validation set's good loans.\n",
              static_cast<long long>(all.test.size()), bad_rate, 100 * kTargetFpr);
  std::printf("%-16s %8s %8s %8s %8s %8s\n", "model", "examples", "recall", "FPR", "ROC-AUC", "PR-AUC");
  for (const auto& m : local) {
    std::printf("%-16s %8lld %8.3f %8.3f %8.3f %8.3f   (local only)\n", m.name.c_str(), static_cast<long long>(m.examples),
                m.recall, m.fpr, m.roc_auc, m.pr_auc);
  }
  std::printf("%-16s %8lld %8.3f %8.3f %8.3f %8.3f   (%lld rounds, threshold Paillier)\n", "federated",
              static_cast<long long>(federated.examples), federated.recall, federated.fpr, federated.roc_auc,
              federated.pr_auc, static_cast<long long>(rounds));
  std::printf("\nsecure vs plaintext FedAvg, same seed, max |weight difference|:\n"
              "  after round 1 (identical updates, quantisation only): %.3g, bound %.3g (%s)\n"
              "  after round %lld: %.3g (sum of the per-round bounds %.3g; later rounds train from models that\n"
              "  already differ by the quantisation, and training amplifies that, so this is not bounded by it)\n",
              first_diff, first_bound, first_diff <= first_bound ? "within" : "EXCEEDED", static_cast<long long>(rounds),
              max_diff, bound);
  std::printf("secure run %.1f s (run %lld), plaintext run %.1f s (run %lld); demo %.1f s\n", secure.seconds,
              static_cast<long long>(secure.run_id), plain.seconds, static_cast<long long>(plain.run_id), wall);
  nlohmann::json j = {{"parties", co.parties},
                      {"threshold", co.threshold},
                      {"rounds", rounds},
                      {"dropped_party", req.drop_party.empty() ? nlohmann::json(nullptr) : nlohmann::json(req.drop_party)},
                      {"dropped_at_round", req.drop_party.empty() ? 0 : drop_round},
                      {"operating_point", {{"target_val_fpr", kTargetFpr}}},
                      {"federated", federated.ToJson()},
                      {"local_only", nlohmann::json::array()},
                      {"max_abs_diff_vs_plaintext", max_diff},
                      {"quantisation_bound", bound},
                      {"first_round", {{"max_abs_diff_vs_plaintext", first_diff}, {"quantisation_bound", first_bound}}},
                      {"secure_run_id", secure.run_id},
                      {"plaintext_run_id", plain.run_id},
                      {"secure_seconds", secure.seconds},
                      {"plaintext_seconds", plain.seconds},
                      {"wall_seconds", wall}};
  for (const auto& m : local) j["local_only"].push_back(m.ToJson());
  if (!req.json_path.empty()) RETURN_IF_ERROR(WriteFileAtomic(req.json_path, j.dump(2) + "\n", 0644));

  ASSIGN_OR_RETURN(auto store, store::RunStore::Open(req.home + "/ronghe.db"));
  ASSIGN_OR_RETURN(auto job, store::Job::Start(store.get(), "fed-demo", "fraud-consortium", j.dump()));
  std::vector<store::MetricRecord> recs = {{rounds, "test", "roc_auc", federated.roc_auc},
                                           {rounds, "test", "pr_auc", federated.pr_auc},
                                           {rounds, "test", "recall", federated.recall},
                                           {rounds, "test", "fpr", federated.fpr},
                                           {rounds, "fed", "max_abs_diff_vs_plaintext", max_diff},
                                           {rounds, "fed", "quantisation_bound", bound},
                                           {1, "fed", "max_abs_diff_vs_plaintext", first_diff},
                                           {1, "fed", "quantisation_bound", first_bound}};
  RETURN_IF_ERROR(job->Metrics(recs));
  RETURN_IF_ERROR(job->Finish(Status::OK()));
  if (first_diff > first_bound) {
    return Internal("round 1 of the secure and plaintext runs differ by more than the quantisation bound");
  }
  return Status::OK();
}

}  // namespace ronghe::fed
