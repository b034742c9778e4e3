// `ronghe serve` (a model repository over HTTP and gRPC), `ronghe calibrate` (a cascade's
// threshold) and `ronghe experiments list|show|promote|rollback` (A/B experiments in the store).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/hub_deploy.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/evidence.h"
#include "ronghe/serve/calibrate.h"
#include "ronghe/serve/experiment.h"
#include "ronghe/serve/job.h"
#include "ronghe/serve/perf.h"
#include "ronghe/store/run_store.h"

namespace ronghe::cli {

namespace {

using nlohmann::json;

// No server needed: a decision is a store row every server on that store picks up within a
// second.
Status RunExperiments(const std::string& home, const std::string& action, const std::string& name,
                      const std::string& variant, bool as_json) {
  ASSIGN_OR_RETURN(auto ex, serve::Experiments::Open(store::HomeStorePath(home)));
  if (action == "list") {
    json all = json::array();
    for (const auto& n : ex->List()) {
      ASSIGN_OR_RETURN(serve::ExperimentReport r, ex->Report(n));
      int64_t requests = 0;
      for (const auto& v : r.stats) requests += v.requests;
      all.push_back({{"name", n},
                     {"model", r.model},
                     {"status", r.status},
                     {"requests", requests},
                     {"verdict", r.verdict},
                     {"decided_variant", r.decided_variant}});
    }
    if (as_json) {
      std::printf("%s\n", all.dump(2).c_str());
      return Status::OK();
    }
    std::printf("%-24s %-16s %-12s %10s  %s\n", "experiment", "model", "status", "requests",
                "verdict");
    for (const auto& e : all) {
      std::printf("%-24s %-16s %-12s %10lld  %s\n", e["name"].get<std::string>().c_str(),
                  e["model"].get<std::string>().c_str(), e["status"].get<std::string>().c_str(),
                  static_cast<long long>(e["requests"].get<int64_t>()),
                  e["verdict"].get<std::string>().c_str());
    }
    return Status::OK();
  }
  ASSIGN_OR_RETURN(serve::ExperimentReport r, ex->Report(name));
  if (action == "show") {
    if (as_json) {
      std::printf("%s\n", serve::ReportJson(r).dump(2).c_str());
      return Status::OK();
    }
    std::printf("experiment %s on model %s: %s%s\n", r.name.c_str(), r.model.c_str(),
                r.status.c_str(),
                r.decided_variant.empty() ? "" : (" (" + r.decided_variant + ")").c_str());
    std::printf("%-14s %7s %9s %7s %9s %9s %9s %10s\n", "variant", "weight", "requests", "errors",
                "p50 ms", "p99 ms", "feedback", "outcome=1");
    for (size_t i = 0; i < r.stats.size(); ++i) {
      const auto& v = r.stats[i];
      std::printf(
          "%-14s %7.3g %9lld %7lld %9.3f %9.3f %9lld %9.1f%%\n", v.variant.c_str(),
          i < r.weights.size() ? r.weights[i] : 0.0, static_cast<long long>(v.requests),
          static_cast<long long>(v.errors), v.p50_ms, v.p99_ms, static_cast<long long>(v.feedback),
          v.feedback ? 100.0 * static_cast<double>(v.positives) / static_cast<double>(v.feedback)
                     : 0.0);
    }
    std::printf("latency (Mann-Whitney U, %s vs %s): z = %.3f, p = %.4g\n",
                r.stats[static_cast<size_t>(r.compared)].variant.c_str(),
                r.stats[0].variant.c_str(), r.latency_z, r.latency_p);
    std::printf("outcome (two-proportion z-test): z = %.3f, p = %.4g\n", r.outcome_z, r.outcome_p);
    std::printf("verdict: %s - %s\n", r.verdict.c_str(), r.reason.c_str());
    return Status::OK();
  }
  if (action == "promote" || action == "rollback") {
    const bool promote = action == "promote";
    ASSIGN_OR_RETURN(std::string v, ex->Conclude(r.name, promote, variant));
    std::printf("experiment %s: %s; all of model %s's default traffic now goes to '%s'\n",
                r.name.c_str(), promote ? "promoted" : "rolled back", r.model.c_str(), v.c_str());
    return Status::OK();
  }
  return InvalidArgument("unknown experiments action '" + action + "'");
}

int RunCalibrate(serve::CalibrateRequest& creq_cal, const Globals& g) {
  creq_cal.home = g.home;
  auto r = serve::Calibrate(creq_cal);
  if (!r.ok()) return Fail(r.status());
  std::printf("route %s: threshold %.6g (target accuracy %.4f on validation)%s\n",
              creq_cal.route.c_str(), r->threshold, r->target,
              creq_cal.write ? ", written to config.toml" : "");
  std::printf("%-11s %7s %10s %10s %10s %10s %10s\n", "split", "rows", "escalated", "cascade",
              "full-only", "light-only", "cost");
  for (const auto& [name, q] :
       {std::pair<const char*, serve::CascadeQuality>{"validation", r->val}, {"test", r->test}}) {
    std::printf("%-11s %7lld %9.1f%% %10.4f %10.4f %10.4f %9.3fx\n", name,
                static_cast<long long>(q.rows), 100 * q.escalated, q.cascade_accuracy,
                q.full_accuracy, q.light_accuracy, q.relative_cost);
  }
  std::printf(
      "cost: the cascade's forward time over the full model's alone, measured on these splits\n");
  return 0;
}

struct PerfFlags {
  serve::LoadOptions load;
  serve::ForwardOptions forward;
  bool in_process = false;
  bool json = false;
};

// Rows as a JSON array on stdout.
template <typename Row>
int PrintJsonRows(const std::vector<Row>& rows) {
  json all = json::array();
  for (const auto& r : rows) all.push_back(serve::ToJson(r));
  std::printf("%s\n", all.dump(2).c_str());
  return 0;
}

struct ServeHubFlags {
  std::string hub, ca, trusted_root, require = "signed";
  std::vector<std::string> models;
};

constexpr const char* kManagedPolicy = "# Written by `ronghe serve --hub`";

// `ronghe serve --hub HUB --model NAME[@VERSION]...`: each model verified on the hub and installed
// into the local repository (reusing what is already there), the hub's root pinned in the
// repository's policy, then the repository served like any other: the server checks every
// load and reload against that root.
Status PrepareHubRepository(const Globals& g, const ServeHubFlags& f, std::string* repo) {
  namespace fs = std::filesystem;
  if (f.models.empty()) return InvalidArgument("--hub needs at least one --model NAME[@VERSION]");
  auto require = hub::ParseRequirement(f.require);
  if (!require.ok()) return InvalidArgument("--require: " + require.status().message());
  if (repo->empty()) *repo = g.home + "/hub-serving";
  RETURN_IF_ERROR(MakeDirs(*repo));
  const std::string policy_file = *repo + "/repository.toml";
  auto existing = ReadFile(policy_file);
  const bool managed = !existing.ok() || existing->rfind(kManagedPolicy, 0) == 0;
  if (managed) {
    // Pin the root this client trusts once updated (by its digest, so each hub keeps its own
    // file), and write the policy before anything is installed: the deploys below are checked
    // against it as the server's loads will be.
    hub::ClientOptions o;
    o.hub = f.hub;
    o.ca_file = f.ca;
    o.trust_dir = hub::TrustDirFor(g.home, f.hub);
    o.trusted_root = f.trusted_root;
    ASSIGN_OR_RETURN(auto client, hub::HubClient::Open(o));
    RETURN_IF_ERROR(client->Update());
    ASSIGN_OR_RETURN(std::string root, ReadFile(o.trust_dir + "/root.json"));
    const std::string pinned = *repo + "/hub-root-" + Sha256Hex(root).substr(0, 16) + ".json";
    if (!FileExists(pinned)) RETURN_IF_ERROR(WriteFileAtomic(pinned, root, 0644));
    std::string roots;
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(*repo, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("hub-root-", 0) == 0 && e.path().extension() == ".json") names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) roots += std::string(roots.empty() ? "" : ", ") + "\"" + n + "\"";
    RETURN_IF_ERROR(WriteFileAtomic(
        policy_file, std::string(kManagedPolicy) +
                         " (rewritten on each start; remove this line to keep your own)\n"
                         "[policy]\nrequire = \"" +
                         hub::RequirementName(*require) + "\"\ntrusted_roots = [" + roots + "]\n"));
    std::printf("policy: require = \"%s\" (%s)\n", hub::RequirementName(*require),
                policy_file.c_str());
  } else {
    std::printf("policy: %s (yours; left as it is)\n", policy_file.c_str());
  }
  for (const std::string& ref : f.models) {
    HubDeployRequest r;
    r.hub = f.hub;
    r.ref = ref;
    r.repo = *repo;
    r.trusted_root = f.trusted_root;
    r.ca = f.ca;
    r.reuse = true;
    ASSIGN_OR_RETURN(HubDeployResult d, DeployFromHub(g, r));
    std::printf("%s %s@%s as %s version %lld\n", d.reused ? "using" : "installed", d.name.c_str(),
                d.version.c_str(), d.as.c_str(), static_cast<long long>(d.repo_version));
  }
  return Status::OK();
}

int RunPerf(PerfFlags& f) {
  if (f.in_process) {
    if (f.forward.repo.empty() || f.forward.model.empty()) {
      return Fail(InvalidArgument("perf --in-process: --repo and --model are required"));
    }
    auto rows = serve::MeasureForward(f.forward);
    if (!rows.ok()) return Fail(rows.status());
    if (f.json) return PrintJsonRows(*rows);
    std::printf("%-10s %12s %10s\n", "batch", "rows/s", "batch ms");
    for (const auto& r : *rows) {
      std::printf("%-10lld %12.0f %10.3f\n", static_cast<long long>(r.batch_size), r.rows_per_s,
                  r.batch_ms);
    }
    return 0;
  }
  if (f.load.url.empty() || f.load.model.empty() || f.load.input.empty()) {
    return Fail(InvalidArgument("perf: --url, --model and --input are required (or --in-process)"));
  }
  auto rows = serve::MeasureLoad(f.load);
  if (!rows.ok()) return Fail(rows.status());
  if (f.json) return PrintJsonRows(*rows);
  std::printf("%-12s %12s %10s %10s %8s\n", "concurrency", "requests/s", "p50 ms", "p99 ms",
              "errors");
  for (const auto& r : *rows) {
    std::printf("%-12d %12.0f %10.3f %10.3f %8lld\n", r.concurrency, r.requests_per_s, r.p50_ms,
                r.p99_ms, static_cast<long long>(r.errors));
  }
  return 0;
}

}  // namespace

void AddServeCommands(CLI::App& root, CommandContext& ctx) {
  auto* serve_cmd =
      root.add_subcommand("serve", "Serve a model repository over HTTP (KServe v2 protocol)");
  auto sreq = Flags<serve::ServeJobRequest>();
  serve_cmd->add_option("--repo", sreq->repo,
                        "Model repository: DIR/<model>/<version>/model.rhm (required without "
                        "--hub; with it, default $RONGHE_HOME/hub-serving)");
  auto hubf = Flags<ServeHubFlags>();
  serve_cmd->add_option("--hub", hubf->hub,
                        "Install --model from this hub (directory or URL) into the repository "
                        "first, verified");
  serve_cmd->add_option("--model", hubf->models, "With --hub: NAME or NAME@VERSION; repeatable");
  serve_cmd->add_option("--hub-ca", hubf->ca, "With --hub: PEM CA bundle for an https:// hub");
  serve_cmd->add_option("--trusted-root", hubf->trusted_root,
                        "With --hub: pin the hub's root metadata (default: trust on first use)");
  serve_cmd->add_option("--require", hubf->require,
                        "With --hub: what the repository's policy requires of every load: none, "
                        "signed (default) or certified");
  serve_cmd->add_option("--host", sreq->host, "Address to listen on (default 0.0.0.0)");
  serve_cmd->add_option("--http", sreq->http_port, "HTTP port (default 8000; 0 = any free port)")
      ->check(CLI::Range(0, 65535));
  serve_cmd
      ->add_option("--grpc", sreq->grpc_port, "gRPC port (default: no gRPC; 0 = any free port)")
      ->check(CLI::Range(0, 65535));
  serve_cmd
      ->add_option("--http-loops", sreq->http_loops,
                   "HTTP event loops, each serving its share of the connections (default 0 = one "
                   "per core)")
      ->check(CLI::Range(0, 1024));
  serve_cmd
      ->add_option("--http-threads", sreq->http_threads,
                   "HTTPS only: connection threads, the most open connections served at once "
                   "(default 256)")
      ->check(CLI::Range(1, 4096));
  serve_cmd
      ->add_option("--max-batch-size", sreq->max_batch_size,
                   "Override every model's batching.max_batch_size (0 = batching off)")
      ->check(CLI::NonNegativeNumber);
  serve_cmd
      ->add_option("--max-queue-delay-us", sreq->max_queue_delay_us,
                   "Override every model's batching.max_queue_delay_us")
      ->check(CLI::NonNegativeNumber);
  serve_cmd
      ->add_option("--instances", sreq->instances,
                   "Override every model's batching.instances (default: each model's config, "
                   "whose default is one instance per core the server may run on)")
      ->check(CLI::Range(1, 1024));
  serve_cmd
      ->add_option("--watch", sreq->watch_s,
                   "Poll the repository every SECONDS and reload what changed (default off)")
      ->check(CLI::Range(0.05, 3600.0));
  serve_cmd
      ->add_option("--tls-cert", sreq->tls_cert,
                   "PEM certificate (chain): serve HTTPS and gRPC over TLS")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--tls-key", sreq->tls_key, "PEM private key of --tls-cert (mode 0600)")
      ->check(CLI::ExistingFile);
  serve_cmd
      ->add_option("--tls-client-ca", sreq->tls_client_ca,
                   "PEM CA bundle: require client certificates it signed (mutual TLS)")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--access-log", sreq->access_log,
                        "Write a JSON line per request to FILE ('-' = stdout)");
  serve_cmd
      ->add_option("--threads", sreq->threads,
                   "Intra-op threads per model instance, LibTorch and OpenBLAS (default 1)")
      ->check(CLI::Range(1, 1024));

  auto* perf_cmd = root.add_subcommand(
      "perf",
      "Measure a served model: closed-loop load over HTTP (requests/s, p50, p99 per concurrency), "
      "or with --in-process the model's own forward rate per batch size");
  auto pf = Flags<PerfFlags>();
  perf_cmd->add_option(
      "--url", pf->load.url,
      "Server to load: http://HOST:PORT (plain HTTP; https:// is not supported yet)");
  perf_cmd->add_option("--model", pf->load.model, "Model name")->required();
  perf_cmd->add_option("--version", pf->load.version, "Version or alias (default: the model's)");
  perf_cmd->add_option("--input", pf->load.input, "File holding one v2 JSON inference request")
      ->check(CLI::ExistingFile);
  perf_cmd->add_option("--concurrency", pf->load.concurrency, "Client counts (default 1,8,32)")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  perf_cmd->add_flag("--binary", pf->load.binary,
                     "Send and ask for the binary tensor extension instead of JSON");
  perf_cmd
      ->add_option("--duration", pf->load.duration_s,
                   "Seconds measured per level (default 5; in process 2)")
      ->check(CLI::Range(0.1, 3600.0));
  perf_cmd->add_option("--warmup", pf->load.warmup_s, "Unmeasured seconds first (default 1)")
      ->check(CLI::Range(0.0, 600.0));
  perf_cmd->add_flag("--in-process", pf->in_process,
                     "Measure the model's own forward pass in this process, no server");
  perf_cmd->add_option("--repo", pf->forward.repo, "With --in-process: the model repository")
      ->check(CLI::ExistingDirectory);
  perf_cmd
      ->add_option("--batch-sizes", pf->forward.batch_sizes,
                   "With --in-process: rows per batch (default 1,8,32)")
      ->delimiter(',')
      ->check(CLI::Range(1, 65536));
  perf_cmd
      ->add_option("--threads", pf->forward.threads,
                   "With --in-process: intra-op threads per instance (default 1, as serve)")
      ->check(CLI::Range(1, 1024));
  perf_cmd
      ->add_option("--instances", pf->forward.instances,
                   "With --in-process: model copies run in parallel (default: one per core, "
                   "as serve)")
      ->check(CLI::Range(1, 1024));
  perf_cmd->add_flag("--json", pf->json, "Rows as a JSON array");
  ctx.On(perf_cmd, [pf, perf_cmd](const Globals&) {
    pf->forward.model = pf->load.model;
    pf->forward.version = pf->load.version;
    if (perf_cmd->count("--duration")) pf->forward.duration_s = pf->load.duration_s;
    if (pf->in_process && (perf_cmd->count("--url") || perf_cmd->count("--input"))) {
      return Fail(
          InvalidArgument("perf: --in-process measures without a server; drop --url and "
                          "--input"));
    }
    if (!pf->in_process && perf_cmd->count("--repo")) {
      return Fail(InvalidArgument("perf: --repo needs --in-process"));
    }
    return RunPerf(*pf);
  });

  auto* cal_cmd = root.add_subcommand(
      "calibrate", "Pick a cascade route's confidence threshold on the validation split");
  auto creq_cal = Flags<serve::CalibrateRequest>();
  cal_cmd->add_option("--repo", creq_cal->repo, "Model repository")
      ->required()
      ->check(CLI::ExistingDirectory);
  cal_cmd
      ->add_option("--route", creq_cal->route,
                   "The cascade entry (a directory with [cascade] in config.toml)")
      ->required();
  cal_cmd
      ->add_option("--target-accuracy", creq_cal->target_accuracy,
                   "Accuracy the cascade must reach on validation")
      ->check(CLI::Range(0.0, 1.0));
  cal_cmd
      ->add_option("--max-drop", creq_cal->max_drop,
                   "Or: at most this far below the full model alone (default 0.005)")
      ->check(CLI::Range(0.0, 1.0));
  cal_cmd->add_flag("--write", creq_cal->write, "Write the threshold into the route's config.toml");

  ctx.On(serve_cmd, [sreq, hubf, serve_cmd](const Globals& g) {
    sreq->home = g.home;
    if (!hubf->hub.empty()) {
      Status st = PrepareHubRepository(g, *hubf, &sreq->repo);
      if (!st.ok()) return Fail(st);
      std::fflush(stdout);
    } else {
      for (const char* flag : {"--model", "--hub-ca", "--trusted-root", "--require"}) {
        if (serve_cmd->count(flag)) {
          return Fail(InvalidArgument(std::string(flag) + " needs --hub"));
        }
      }
      if (sreq->repo.empty()) return Fail(InvalidArgument("--repo (or --hub) is required"));
      std::error_code ec;
      if (!std::filesystem::is_directory(sreq->repo, ec)) {
        return Fail(InvalidArgument("--repo: directory not found: " + sreq->repo));
      }
    }
    return Done(serve::RunServeJob(*sreq));
  });
  ctx.On(cal_cmd, [creq_cal](const Globals& g) { return RunCalibrate(*creq_cal, g); });

  auto* exp_cmd = root.add_subcommand(
      "experiments", "A/B experiments of served models: list, show, promote, rollback");
  exp_cmd->require_subcommand(1);
  struct ExperimentFlags {
    std::string name, variant;
    bool json = false;
  };
  auto f = Flags<ExperimentFlags>();
  auto* list = exp_cmd->add_subcommand("list", "Experiments in the run store with their verdicts");
  list->add_flag("--json", f->json, "Print as JSON");
  ctx.On(list,
         [f](const Globals& g) { return Done(RunExperiments(g.home, "list", "", "", f->json)); });
  for (const char* a : {"show", "promote", "rollback"}) {
    const std::string action = a;
    auto* c = exp_cmd->add_subcommand(
        a, action == "show"      ? "Per-variant statistics, tests and verdict"
           : action == "promote" ? "Send all default traffic to the challenger (or --variant)"
                                 : "Send all default traffic back to the control (or --variant)");
    c->add_option("NAME", f->name, "Experiment name")->required();
    if (action == "show")
      c->add_flag("--json", f->json, "Print as JSON");
    else
      c->add_option("--variant", f->variant, "The variant that wins");
    ctx.On(c, [f, action](const Globals& g) {
      return Done(RunExperiments(g.home, action, f->name, f->variant, f->json));
    });
  }
}

}  // namespace ronghe::cli
