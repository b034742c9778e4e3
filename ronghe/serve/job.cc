#include "ronghe/serve/job.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <signal.h>

#include <csignal>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"
#include "ronghe/serve/experiment.h"
#include "ronghe/serve/grpc.h"
#include "ronghe/serve/http.h"
#include "ronghe/serve/server.h"
#include "ronghe/serve/tls.h"
#include "ronghe/store/run_store.h"

namespace ronghe::serve {

using nlohmann::json;

Status RunServeJob(const ServeJobRequest& req) {
  if (req.repo.empty()) return InvalidArgument("serve needs --repo DIR");
  // Signals are taken by sigwait below; block them before any thread exists so every thread
  // inherits the mask and none is killed mid-request.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A client that hangs up mid-response makes a write fail with EPIPE; over TLS OpenSSL writes
  // with write(), which also raises SIGPIPE, and that must not end the server. (cpp-httplib's
  // Server constructor ignores it too; this does not depend on that.)
  std::signal(SIGPIPE, SIG_IGN);
  if (req.threads > 0) {
    at::set_num_threads(req.threads);
    // Debian's LibTorch calls BLAS through libblas.so.3, which is OpenBLAS when installed; its
    // thread count is separate from LibTorch's and only settable through its own call.
    using SetThreads = void (*)(int);
    if (auto f = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(req.threads);
  }

  TlsOptions tls{req.tls_cert, req.tls_key, req.tls_client_ca};
  if (!tls.enabled() && !tls.client_ca_file.empty()) {
    return InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  }
  // Bad TLS files fail here, before the store records a run or a model is loaded.
  if (tls.enabled()) RETURN_IF_ERROR(LoadTls(tls).status());

  RETURN_IF_ERROR(MakeDirs(req.home, 0700));
  std::string db = req.home + "/ronghe.db";
  ASSIGN_OR_RETURN(auto store, store::RunStore::Open(db));
  json config = {{"repo", req.repo}, {"host", req.host}, {"http_port", req.http_port}, {"grpc_port", req.grpc_port},
                 {"max_batch_size", req.max_batch_size}, {"max_queue_delay_us", req.max_queue_delay_us},
                 {"watch_s", req.watch_s}, {"tls", tls.enabled()}, {"mutual_tls", !tls.client_ca_file.empty()}};
  ASSIGN_OR_RETURN(auto job, store::Job::Start(store.get(), "serve", req.repo, config.dump()));

  ServerOptions so;
  so.repository.dir = req.repo;
  so.repository.max_batch_size = req.max_batch_size;
  so.repository.max_queue_delay_us = req.max_queue_delay_us;
  so.watch_interval_s = req.watch_s;
  so.access_log = req.access_log;
  so.store_path = db;
  auto server = InferenceServer::Create(so);
  if (!server.ok()) {
    (void)job->Finish(server.status());
    return server.status();
  }
  HttpOptions ho;
  ho.host = req.host;
  ho.port = req.http_port;
  ho.threads = req.http_threads;
  ho.tls = tls;
  auto http = HttpFrontend::Start(server->get(), ho);
  if (!http.ok()) {
    (void)job->Finish(http.status());
    return http.status();
  }
  std::unique_ptr<GrpcFrontend> grpc;
  if (req.grpc_port >= 0) {
    GrpcOptions go;
    go.host = req.host;
    go.port = req.grpc_port;
    go.tls = tls;
    auto g = GrpcFrontend::Start(server->get(), go);
    if (!g.ok()) {
      (void)job->Finish(g.status());
      return g.status();
    }
    grpc = std::move(g).value();
  }
  std::string models;
  for (const auto& m : (*server)->repository().LoadedModels()) models += (models.empty() ? "" : ", ") + m;
  std::string grpc_where = grpc ? " and grpc" + std::string(tls.enabled() ? "s" : "") + "://" + req.host + ":" +
                                       std::to_string(grpc->port())
                                 : "";
  std::printf("serving %s on http%s://%s:%d%s%s (run %lld)\n", models.c_str(), tls.enabled() ? "s" : "",
              req.host.c_str(), (*http)->port(), grpc_where.c_str(),
              tls.client_ca_file.empty() ? "" : ", client certificates required",
              static_cast<long long>(job->id()));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "ronghe serve: signal %d: draining\n", sig);
  (*server)->BeginDrain();   // readiness fails at once, new requests get 503
  (*http)->Stop();           // stop accepting; requests in progress finish
  if (grpc) grpc->Stop();
  grpc.reset();
  http->reset();
  server->reset();           // batchers drain what is queued; experiment records are flushed
  std::fprintf(stderr, "ronghe serve: stopped\n");
  return job->Finish(Status::OK());
}

Status ExperimentsCommand(const std::string& home, const std::string& action, const std::string& name,
                          const std::string& variant, bool as_json) {
  ASSIGN_OR_RETURN(auto ex, Experiments::Open(home + "/ronghe.db"));
  if (action == "list") {
    json all = json::array();
    for (const auto& n : ex->List()) {
      ASSIGN_OR_RETURN(ExperimentReport r, ex->Report(n));
      int64_t requests = 0;
      for (const auto& v : r.stats) requests += v.requests;
      all.push_back({{"name", n}, {"model", r.model}, {"status", r.status}, {"requests", requests},
                     {"verdict", r.verdict}, {"decided_variant", r.decided_variant}});
    }
    if (as_json) {
      std::printf("%s\n", all.dump(2).c_str());
      return Status::OK();
    }
    std::printf("%-24s %-16s %-12s %10s  %s\n", "experiment", "model", "status", "requests", "verdict");
    for (const auto& e : all) {
      std::printf("%-24s %-16s %-12s %10lld  %s\n", e["name"].get<std::string>().c_str(),
                  e["model"].get<std::string>().c_str(), e["status"].get<std::string>().c_str(),
                  static_cast<long long>(e["requests"].get<int64_t>()), e["verdict"].get<std::string>().c_str());
    }
    return Status::OK();
  }
  ASSIGN_OR_RETURN(ExperimentReport r, ex->Report(name));
  if (action == "show") {
    if (as_json) {
      json vars = json::array();
      for (const auto& v : r.stats) {
        vars.push_back({{"variant", v.variant}, {"requests", v.requests}, {"errors", v.errors},
                        {"p50_ms", v.p50_ms}, {"p99_ms", v.p99_ms}, {"feedback", v.feedback},
                        {"positives", v.positives}});
      }
      std::printf("%s\n", json{{"name", r.name}, {"model", r.model}, {"status", r.status},
                               {"variants", vars}, {"latency_p", r.latency_p}, {"latency_z", r.latency_z},
                               {"outcome_p", r.outcome_p}, {"outcome_z", r.outcome_z},
                               {"verdict", r.verdict}, {"reason", r.reason}}.dump(2).c_str());
      return Status::OK();
    }
    std::printf("experiment %s on model %s: %s%s\n", r.name.c_str(), r.model.c_str(), r.status.c_str(),
                r.decided_variant.empty() ? "" : (" (" + r.decided_variant + ")").c_str());
    std::printf("%-14s %7s %9s %7s %9s %9s %9s %10s\n", "variant", "weight", "requests", "errors", "p50 ms",
                "p99 ms", "feedback", "outcome=1");
    for (size_t i = 0; i < r.stats.size(); ++i) {
      const auto& v = r.stats[i];
      std::printf("%-14s %7.3g %9lld %7lld %9.3f %9.3f %9lld %9.1f%%\n", v.variant.c_str(),
                  i < r.weights.size() ? r.weights[i] : 0.0, static_cast<long long>(v.requests),
                  static_cast<long long>(v.errors), v.p50_ms, v.p99_ms, static_cast<long long>(v.feedback),
                  v.feedback ? 100.0 * static_cast<double>(v.positives) / static_cast<double>(v.feedback) : 0.0);
    }
    std::printf("latency (Mann-Whitney U, %s vs %s): z = %.3f, p = %.4g\n", r.stats[static_cast<size_t>(r.compared)].variant.c_str(),
                r.stats[0].variant.c_str(), r.latency_z, r.latency_p);
    std::printf("outcome (two-proportion z-test): z = %.3f, p = %.4g\n", r.outcome_z, r.outcome_p);
    std::printf("verdict: %s - %s\n", r.verdict.c_str(), r.reason.c_str());
    return Status::OK();
  }
  if (action == "promote" || action == "rollback") {
    std::string v = variant;
    if (v.empty()) v = action == "promote" ? r.stats[static_cast<size_t>(r.compared)].variant : r.stats[0].variant;
    if (std::find(r.variants.begin(), r.variants.end(), v) == r.variants.end()) {
      return InvalidArgument("experiment '" + r.name + "' has no variant '" + v + "'");
    }
    RETURN_IF_ERROR(ex->Decide(r.name, action == "promote" ? "promoted" : "rolled_back", v));
    std::printf("experiment %s: %s; all of model %s's default traffic now goes to '%s'\n", r.name.c_str(),
                action == "promote" ? "promoted" : "rolled back", r.model.c_str(), v.c_str());
    return Status::OK();
  }
  return InvalidArgument("unknown experiments action '" + action + "'");
}

}  // namespace ronghe::serve
