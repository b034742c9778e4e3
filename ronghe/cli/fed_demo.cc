#include "ronghe/cli/fed_demo.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/net.h"
#include "ronghe/base/subprocess.h"
#include "ronghe/data/datasets.h"
#include "ronghe/data/source.h"
#include "ronghe/fed/consortium.h"
#include "ronghe/fed/demo.h"
#include "ronghe/store/run_store.h"

namespace ronghe::cli {

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// What both federations share, checked before any process starts.
struct DemoPlan {
  std::string fed_file, work;
  int port = 0;
  std::string consortium_toml;  // consortium.toml with the chosen loopback port
  fed::ConsortiumOptions co;
  int64_t rounds = 10, drop_round = 0;
  std::string scheme = "paillier-masked";  // the federation file's secure scheme
};

Result<DemoPlan> PlanDemo(const DemoRequest& req) {
  DemoPlan plan;
  const std::string fraud = req.source_dir + "/examples/fraud";
  plan.fed_file = fraud + "/federation.toml";
  plan.work = req.workdir;
  if (plan.work.empty()) {
    char stamp[32];
    std::time_t now = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
    plan.work = req.home + "/fed-demo/" + stamp + "-" + std::to_string(::getpid());
  }
  ASSIGN_OR_RETURN(plan.port, FreeLoopbackPort());
  ASSIGN_OR_RETURN(Config ccfg, Config::Load(fraud + "/consortium.toml"));
  RETURN_IF_ERROR(
      ccfg.ApplyOverride("coordinator.address=\"127.0.0.1:" + std::to_string(plan.port) + "\""));
  RETURN_IF_ERROR(fed::ParseConsortiumOptions(ccfg, &plan.co));
  RETURN_IF_ERROR(ccfg.CheckNoUnknownKeys());
  plan.consortium_toml = ccfg.ToToml();
  // The federation file's settings, for the baselines and the table; and the data every bank
  // process will load: missing data fails here, not in five processes at once.
  ASSIGN_OR_RETURN(Config fcfg, Config::Load(plan.fed_file));
  RETURN_IF_ERROR(fcfg.Get("federation.rounds", &plan.rounds));
  RETURN_IF_ERROR(fcfg.Get("federation.secure_aggregation", &plan.scheme));
  if (plan.scheme == "none") {
    return InvalidArgument(plan.fed_file +
                           ": federation.secure_aggregation is \"none\"; the demo compares a "
                           "secure scheme with the plaintext baseline");
  }
  data::DataOptions dopts;
  RETURN_IF_ERROR(data::ParseDataOptions(fcfg, &dopts));
  if (dopts.dataset != "csv") {
    Status present = data::CheckDatasetPresent(req.home, dopts.dataset);
    // The message names the data set and the command that fetches it.
    if (!present.ok()) return FailedPrecondition(present.message());
  }
  if (req.rounds > 0) plan.rounds = req.rounds;
  plan.drop_round = req.drop_at_round > 0 ? req.drop_at_round : (plan.rounds + 1) / 2;
  const auto& parties = plan.co.parties;
  if (!req.drop_party.empty()) {
    if (std::find(parties.begin(), parties.end(), req.drop_party) == parties.end()) {
      return InvalidArgument("--drop-party: '" + req.drop_party + "' is not a party of " +
                             plan.co.id);
    }
    if (plan.drop_round < 1 || plan.drop_round > plan.rounds) {
      return InvalidArgument("--drop-at-round: must be between 1 and " +
                             std::to_string(plan.rounds));
    }
    if (static_cast<int>(parties.size()) - 1 < plan.co.threshold) {
      return InvalidArgument("--drop-party: too few parties would remain");
    }
  }
  return plan;
}

// The last non-empty line of a log, for naming why a process failed.
std::string LastLine(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1);
}

// One process of the demo: this binary with `args`, its output in `log` ("" = the terminal).
struct DemoProcess {
  std::string name, log;
  Subprocess proc;
  bool may_die = false;  // the bank that drills a crash ends by SIGKILL
  std::string Failure(const ExitStatus& e) const {
    std::string why = name + " " + e.Describe();
    std::string last = log.empty() ? "" : LastLine(log);
    if (!last.empty()) why += ": " + last;
    return why + (log.empty() ? "" : " (log: " + log + ")");
  }
};

Result<DemoProcess> Start(const std::string& name, std::vector<std::string> args,
                          const std::string& log) {
  SpawnOptions o;
  o.argv = {"/proc/self/exe"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.stdout_path = log;
  o.stderr_path = log;
  o.append = true;
  o.output_mode = 0600;
  ASSIGN_OR_RETURN(Subprocess p, Subprocess::Spawn(o));
  return DemoProcess{name, log, std::move(p)};
}

// Waits for the coordinator while watching the banks: a bank that fails (other than the
// drilled crash) or a coordinator left alone ends the federation at once, naming who and why.
Status Watch(DemoProcess& coord, std::vector<DemoProcess>& banks, double timeout_s) {
  constexpr double kAloneGraceS = 30;  // banks finished; the coordinator writes its artifact
  const auto start = Clock::now();
  Clock::time_point all_gone = Clock::time_point::max();
  Status bad;
  while (bad.ok()) {
    if (auto e = coord.proc.Poll()) {
      if (!e->ok()) bad = Unavailable("the coordinator failed: " + coord.Failure(*e));
      break;
    }
    bool any_running = false;
    for (auto& b : banks) {
      auto e = b.proc.Poll();
      if (!e) {
        any_running = true;
      } else if (!e->ok() && !(b.may_die && e->signaled)) {
        bad = Unavailable(b.Failure(*e));
        break;
      }
    }
    if (!any_running && all_gone == Clock::time_point::max()) all_gone = Clock::now();
    if (bad.ok() && Since(all_gone) > kAloneGraceS) {
      bad = Unavailable(
          "every bank process has exited and the coordinator is still waiting; logs in " +
          coord.log.substr(0, coord.log.rfind('/') + 1));
    }
    if (bad.ok() && Since(start) > timeout_s)
      bad = DeadlineExceeded("the coordinator did not finish in time");
    if (bad.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!bad.ok()) {
    coord.proc.Kill();
    for (auto& b : banks) b.proc.Kill();
    return bad;
  }
  for (auto& b : banks) {
    auto e = b.proc.Wait(30);
    if (!e.ok()) {
      b.proc.Kill();
      return Unavailable(b.name + " did not finish; log: " + b.log);
    }
    if (!e->ok() && !(b.may_die && e->signaled)) return Unavailable(b.Failure(*e));
  }
  return Status::OK();
}

struct RunOut {
  std::string artifact;
  int64_t run_id = 0;
  double seconds = 0;
};

// One federation: the coordinator and a process per bank, on the plan's loopback port.
Result<RunOut> Federate(const DemoPlan& plan, const DemoRequest& req, const std::string& mode) {
  RunOut out;
  const auto start = Clock::now();
  const std::string name = "fraud-demo-" + mode;
  const std::vector<std::string> common = {"--home", req.home, "fed"};
  std::vector<std::string> cargs = common;
  for (const std::string& a : std::vector<std::string>{
           "coordinator", "--config", plan.fed_file, "--bundle",
           plan.work + "/consortium/coordinator", "--new", "--set", "job.name=\"" + name + "\"",
           "--set", "federation.secure_aggregation=\"" + mode + "\"", "--set",
           "federation.rounds=" + std::to_string(plan.rounds), "--set",
           "federation.min_participants=3", "--set", "federation.keep_rounds=0",
           // Both runs must start with all five banks to compute the same sums: round 1 waits up
           // to 30 s for a slow starter (later rounds do not wait for the bank that dies).
           "--set", "federation.gather_s=30"})
    cargs.push_back(a);
  std::printf(
      "-- %s federation: coordinator and %zu bank processes on 127.0.0.1:%d%s\n",
      mode != "none" ? ("secure (" + mode + ")").c_str() : "plaintext FedAvg baseline",
      plan.co.parties.size(), plan.port,
      req.drop_party.empty()
          ? ""
          : (", " + req.drop_party + " dies in round " + std::to_string(plan.drop_round)).c_str());
  std::fflush(stdout);
  // The secure run's coordinator shows its progress on the terminal; everything else is logged.
  ASSIGN_OR_RETURN(DemoProcess coord,
                   Start("the coordinator", cargs,
                         mode != "none" ? "" : plan.work + "/coordinator-" + mode + ".log"));
  std::vector<DemoProcess> banks;
  for (const auto& p : plan.co.parties) {
    std::vector<std::string> a = common;
    for (const std::string& x : std::vector<std::string>{
             "participant", "--config", plan.fed_file, "--bundle", plan.work + "/consortium/" + p})
      a.push_back(x);
    if (p == req.drop_party) {
      a.push_back("--crash-at-round");
      a.push_back(std::to_string(plan.drop_round));
    }
    auto bank = Start(p, a, plan.work + "/" + p + "-" + mode + ".log");
    if (!bank.ok()) {
      coord.proc.Kill();
      for (auto& b : banks) b.proc.Kill();
      return bank.status();
    }
    bank->may_die = p == req.drop_party;
    banks.push_back(std::move(*bank));
  }
  RETURN_IF_ERROR(Watch(coord, banks, 600));
  ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
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
  out.seconds = Since(start);
  return out;
}

void PrintTable(const DemoPlan& plan, const fed::DemoEvaluation& ev, const RunOut& secure,
                const RunOut& plain, double wall) {
  std::printf(
      "\nHeld-out test set: %lld loans (%.1f%% bad), no bank trains on it. Operating point: flag "
      "the "
      "riskiest %.0f%% of the validation set's good loans.\n",
      static_cast<long long>(ev.test_rows), ev.test_bad_percent, 100 * fed::kDemoTargetFpr);
  std::printf("%-16s %8s %8s %8s %8s %8s\n", "model", "examples", "recall", "FPR", "ROC-AUC",
              "PR-AUC");
  for (const auto& m : ev.local_only) {
    std::printf("%-16s %8lld %8.3f %8.3f %8.3f %8.3f   (local only)\n", m.name.c_str(),
                static_cast<long long>(m.examples), m.recall, m.fpr, m.roc_auc, m.pr_auc);
  }
  const auto& f = ev.federated;
  std::printf("%-16s %8lld %8.3f %8.3f %8.3f %8.3f   (%lld rounds, %s)\n", "federated",
              static_cast<long long>(f.examples), f.recall, f.fpr, f.roc_auc, f.pr_auc,
              static_cast<long long>(plan.rounds), plan.scheme.c_str());
  std::printf(
      "\n%s vs the plaintext baseline, same seed, max |weight difference|: %.3g after round 1, "
      "%.3g after round %lld (%s: both sum the same quantised updates)\n",
      plan.scheme.c_str(), ev.first_diff, ev.max_diff, static_cast<long long>(plan.rounds),
      ev.first_diff == 0 && ev.max_diff == 0 ? "identical" : "DIFFERENT");
  std::printf("secure run %.1f s (run %lld), plaintext run %.1f s (run %lld); demo %.1f s\n",
              secure.seconds, static_cast<long long>(secure.run_id), plain.seconds,
              static_cast<long long>(plain.run_id), wall);
}

nlohmann::json ResultJson(const DemoPlan& plan, const DemoRequest& req,
                          const fed::DemoEvaluation& ev, const RunOut& secure, const RunOut& plain,
                          double wall) {
  nlohmann::json j = {
      {"parties", plan.co.parties},
      {"threshold", plan.co.threshold},
      {"rounds", plan.rounds},
      {"dropped_party",
       req.drop_party.empty() ? nlohmann::json(nullptr) : nlohmann::json(req.drop_party)},
      {"dropped_at_round", req.drop_party.empty() ? 0 : plan.drop_round},
      {"operating_point", {{"target_val_fpr", fed::kDemoTargetFpr}}},
      {"federated", ev.federated.ToJson()},
      {"local_only", nlohmann::json::array()},
      {"scheme", plan.scheme},
      {"max_abs_diff_vs_plaintext", std::max(ev.max_diff, ev.first_diff)},
      {"quantisation_bound", ev.bound},
      {"first_round",
       {{"max_abs_diff_vs_plaintext", ev.first_diff}, {"quantisation_bound", ev.first_bound}}},
      {"secure_run_id", secure.run_id},
      {"plaintext_run_id", plain.run_id},
      {"secure_seconds", secure.seconds},
      {"plaintext_seconds", plain.seconds},
      {"wall_seconds", wall}};
  for (const auto& m : ev.local_only) j["local_only"].push_back(m.ToJson());
  return j;
}

}  // namespace

Status RunFedDemo(const DemoRequest& req) {
  const auto t0 = Clock::now();
  ASSIGN_OR_RETURN(DemoPlan plan, PlanDemo(req));
  RETURN_IF_ERROR(MakeDirs(plan.work, 0700));
  std::printf("== ronghe fed demo: %zu banks, any %d decrypt; work folder %s\n",
              plan.co.parties.size(), plan.co.threshold, plan.work.c_str());
  std::printf("-- key ceremony (%d-bit threshold Paillier) and mutual-TLS certificates\n",
              plan.co.key_bits);
  std::fflush(stdout);
  RETURN_IF_ERROR(fed::InitConsortium(plan.co, plan.consortium_toml, plan.work + "/consortium"));

  // Two federations with the same seed: the secure scheme, then the plaintext baseline.
  ASSIGN_OR_RETURN(RunOut secure, Federate(plan, req, plan.scheme));
  ASSIGN_OR_RETURN(RunOut plain, Federate(plan, req, "none"));
  fed::DemoEvaluationRequest er{req.home,        plan.fed_file,  plan.co.parties, plan.rounds,
                                secure.artifact, plain.artifact, secure.run_id,   plain.run_id};
  ASSIGN_OR_RETURN(fed::DemoEvaluation ev, fed::EvaluateDemo(er));
  const double wall = Since(t0);
  PrintTable(plan, ev, secure, plain, wall);

  nlohmann::json j = ResultJson(plan, req, ev, secure, plain, wall);
  if (!req.json_path.empty())
    RETURN_IF_ERROR(WriteFileAtomic(req.json_path, j.dump(2) + "\n", 0644));
  ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
  ASSIGN_OR_RETURN(auto job,
                   store::Job::Start(store.get(), "fed-demo", "fraud-consortium", j.dump()));
  const int64_t rounds = plan.rounds;
  std::vector<store::MetricRecord> recs = {
      {rounds, "test", "roc_auc", ev.federated.roc_auc},
      {rounds, "test", "pr_auc", ev.federated.pr_auc},
      {rounds, "test", "recall", ev.federated.recall},
      {rounds, "test", "fpr", ev.federated.fpr},
      {rounds, "fed", "max_abs_diff_vs_plaintext", ev.max_diff},
      {rounds, "fed", "quantisation_bound", ev.bound},
      {1, "fed", "max_abs_diff_vs_plaintext", ev.first_diff},
      {1, "fed", "quantisation_bound", ev.first_bound}};
  RETURN_IF_ERROR(job->Metrics(recs));
  RETURN_IF_ERROR(job->Finish(Status::OK()));
  if (ev.first_diff != 0 || ev.max_diff != 0) {
    return Internal("the " + plan.scheme +
                    " and plaintext runs differ (they must compute the same sums): " +
                    std::to_string(std::max(ev.first_diff, ev.max_diff)));
  }
  return Status::OK();
}

}  // namespace ronghe::cli
