// The inference server's core, independent of the wire: resolves a request to a model version
// (or a cascade route, or an experiment's variant), runs it through that version's dynamic
// batcher and turns the rows back into protocol tensors. HTTP (http.h) and gRPC (grpc.h) are
// thin front ends over it, so both speak the same semantics and share the same statistics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"
#include "ronghe/serve/kserve.h"
#include "ronghe/serve/repository.h"
#include "ronghe/serve/route.h"

namespace ronghe::serve {

struct ServerOptions {
  RepositoryOptions repository;
  double watch_interval_s = 0;        // Default: 0 = no repository watch; else poll period.
  int64_t max_body_bytes = 16 << 20;  // Default: 16 MiB. Larger bodies: 413.
  std::string access_log;             // Default: "" = none; "-" = stdout; else a file (appended).
  std::string store_path;             // Default: "" = no experiment recording (tests); the CLI
                                      // passes the run store's database.
};

// HTTP status for a Status: 400 invalid, 404 not found, 429 queue full, 503 unavailable,
// 504 timed out, 500 otherwise.
int HttpStatusOf(const Status& st);

class InferenceServer {
 public:
  static Result<std::unique_ptr<InferenceServer>> Create(const ServerOptions& options);
  ~InferenceServer();

  // `version` "" = the model's default (or the experiment's pick). Never throws.
  Result<InferResult> Infer(const std::string& model, const std::string& version,
                            const InferRequestMsg& request);
  // Infer in two halves, for a front end that starts several requests before it waits on any
  // (the event-driven HTTP front end starts every request one poll of its sockets brought, then
  // finishes them: the first finish runs them all as one batch on its own thread). `p` and
  // `request` stay in place until FinishInfer returns. Infer = BeginInfer + FinishInfer.
  void BeginInfer(const std::string& model, const std::string& version,
                  const InferRequestMsg& request, PendingInfer* p);
  Result<InferResult> FinishInfer(PendingInfer* p);
  // The v2 model metadata object.
  Result<nlohmann::json> ModelMetadata(const std::string& model, const std::string& version) const;
  Status ModelReady(const std::string& model, const std::string& version) const;
  nlohmann::json RepositoryIndex() const;
  Status Load(const std::string& model);
  Status Unload(const std::string& model);
  // Feedback for an earlier request (by its id): an outcome label for experiments and cascades.
  Status Feedback(const std::string& model, const nlohmann::json& body);

  bool Ready() const { return !draining_.load(); }
  // Marks the server not ready (readiness probes fail) ahead of a shutdown.
  void BeginDrain() { draining_.store(true); }
  // Prometheus text exposition of every counter.
  std::string Metrics() const;
  void AccessLog(const nlohmann::json& line);
  bool access_log_enabled() const { return log_ != nullptr; }

  ModelRepository& repository() { return *repo_; }
  Experiments* experiments() { return experiments_.get(); }

 private:
  InferenceServer() = default;
  // The route for a model's traffic, from its settings: the one place that tells them apart.
  const Route& RouteFor(const ModelEntry& entry) const;

  ServerOptions options_;
  std::unique_ptr<ModelRepository> repo_;
  std::unique_ptr<Experiments> experiments_;
  std::unique_ptr<CascadeStats> cascades_;
  std::unique_ptr<VersionRoute> version_route_;
  std::unique_ptr<ExperimentRoute> experiment_route_;
  std::unique_ptr<CascadeRoute> cascade_route_;
  std::atomic<bool> draining_{false};
  std::FILE* log_ = nullptr;
  Mutex log_mu_;  // one access-log line at a time
};

}  // namespace ronghe::serve
