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
#include "ronghe/store/run_store.h"
#include "ronghe/tls/tls.h"

namespace ronghe::serve {

using nlohmann::json;

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  // Debian's LibTorch calls BLAS through libblas.so.3, which is OpenBLAS when installed; its
  // thread count is separate from LibTorch's and only settable through its own call.
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    f(threads);
}

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
  if (req.threads > 0) SetComputeThreads(req.threads);

  TlsOptions tls{req.tls_cert, req.tls_key, req.tls_client_ca};
  if (!tls.enabled() && !tls.client_ca_file.empty()) {
    return InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  }
  // Bad TLS files fail here, before the store records a run or a model is loaded.
  if (tls.enabled()) RETURN_IF_ERROR(LoadTls(tls).status());

  ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
  const std::string db = store::HomeStorePath(req.home);
  json config = {{"repo", req.repo},
                 {"host", req.host},
                 {"http_port", req.http_port},
                 {"grpc_port", req.grpc_port},
                 {"max_batch_size", req.max_batch_size},
                 {"max_queue_delay_us", req.max_queue_delay_us},
                 {"instances", req.instances},
                 {"threads", req.threads},
                 {"watch_s", req.watch_s},
                 {"tls", tls.enabled()},
                 {"mutual_tls", !tls.client_ca_file.empty()}};
  ASSIGN_OR_RETURN(auto job, store::Job::Start(store.get(), "serve", req.repo, config.dump()));

  ServerOptions so;
  so.repository.dir = req.repo;
  so.repository.max_batch_size = req.max_batch_size;
  so.repository.max_queue_delay_us = req.max_queue_delay_us;
  so.repository.instances = req.instances;
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
  ho.loops = req.http_loops;
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
  for (const auto& m : (*server)->repository().LoadedModels())
    models += (models.empty() ? "" : ", ") + m;
  std::string grpc_where = grpc ? " and grpc" + std::string(tls.enabled() ? "s" : "") + "://" +
                                      req.host + ":" + std::to_string(grpc->port())
                                : "";
  std::printf("serving %s on http%s://%s:%d%s%s (run %lld)\n", models.c_str(),
              tls.enabled() ? "s" : "", req.host.c_str(), (*http)->port(), grpc_where.c_str(),
              tls.client_ca_file.empty() ? "" : ", client certificates required",
              static_cast<long long>(job->id()));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "ronghe serve: signal %d: draining\n", sig);
  (*server)->BeginDrain();  // readiness fails at once, new requests get 503
  (*http)->Stop();          // stop accepting; requests in progress finish
  if (grpc) grpc->Stop();
  grpc.reset();
  http->reset();
  server->reset();  // batchers drain what is queued; experiment records are flushed
  std::fprintf(stderr, "ronghe serve: stopped\n");
  return job->Finish(Status::OK());
}

}  // namespace ronghe::serve
