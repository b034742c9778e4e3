// How a request reaches models, one interface for every kind of traffic (Triton's scheduler
// interface): a plain version, an A/B experiment's variant, or a cascade of a light model that
// escalates unsure rows to a full one. The server picks the route from the model's settings
// (RouteFor) and nothing else branches on the kind. Every route runs versions through
// RunVersion, so latency, failures and priority are checked and recorded one way.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"
#include "ronghe/serve/batcher.h"
#include "ronghe/serve/kserve.h"
#include "ronghe/serve/repository.h"

namespace at {
class Tensor;
}

namespace ronghe::serve {

class Experiments;

struct InferResult {
  std::string model;
  std::string version;
  std::vector<InferTensor> outputs;
  nlohmann::json parameters = nlohmann::json::object();  // e.g. variant, escalated rows
};

// The request's scheduling parameters, checked against the version(s) it will run on.
struct RequestOptions {
  int priority = 0;        // 0 = highest; must be below each version's priority_levels
  int64_t timeout_us = 0;  // 0 = the version's default
};
// parameters.priority and parameters.timeout: non-negative integers; a priority outside
// 0..priority_levels-1 of `v` is InvalidArgument naming the range.
Result<RequestOptions> ParseRequestOptions(const InferRequestMsg& request, const ServedVersion& v);

// One call on a version, recorded on it: success with its latency, or a failure. Invalid input
// (the client's fault) is not counted as the model's failure.
Result<at::Tensor> RunVersion(ServedVersion& v, const at::Tensor& batch,
                              const RequestOptions& options);

class Route;

// A request between InferenceServer::BeginInfer and FinishInfer. Owned by the front end, which
// must keep it (and the request message it names) in place until FinishInfer returns; reused
// from request to request, its buffers keep their capacity.
struct PendingInfer {
  PendingInfer() = default;
  PendingInfer(const PendingInfer&) = delete;
  PendingInfer& operator=(const PendingInfer&) = delete;

  // Set by Begin. Not queued: `result` is already the answer (an error, or a route that runs
  // whole at once, such as a cascade).
  bool queued = false;
  Result<InferResult> result = Internal("request not started");
  const Route* route = nullptr;
  const InferRequestMsg* request = nullptr;
  std::shared_ptr<const ModelEntry> entry;  // keeps the experiment's settings alive
  std::shared_ptr<ServedVersion> version;
  const std::string* variant = nullptr;  // the experiment's pick, or none
  std::chrono::steady_clock::time_point start;
  Ticket ticket;
  std::vector<float> scratch, output;
};

// The two halves of InferOnVersion: Begin prepares the rows and queues them without waiting (an
// error lands in p->result); Finish waits and builds the outputs.
void BeginOnVersion(std::shared_ptr<ServedVersion> v, const InferRequestMsg& request,
                    PendingInfer* p);
Result<InferResult> FinishOnVersion(PendingInfer* p);
// Both halves: a whole request on one version, inputs to the version's batcher, outputs back.
Result<InferResult> InferOnVersion(std::shared_ptr<ServedVersion> v,
                                   const InferRequestMsg& request);

// Live statistics of cascade routes. Predictions are kept (bounded) per request id so feedback
// labels can score the cascade, and, on audited requests, the full model alone.
class CascadeStats {
 public:
  struct Route {
    int64_t requests = 0, rows = 0, escalated = 0, audited_rows = 0;
    int64_t labeled = 0, correct = 0;  // all labeled rows
    int64_t audit_labeled = 0, audit_cascade_correct = 0, audit_full_correct = 0;  // paired
  };
  void Count(const std::string& route, int64_t rows, int64_t escalated, int64_t audited)
      EXCLUDES(mu_);
  void Remember(const std::string& route, const std::string& id, std::vector<int64_t> cascade,
                std::vector<int64_t> full) EXCLUDES(mu_);
  Status Label(const std::string& route, const std::string& id, const std::vector<int64_t>& labels)
      EXCLUDES(mu_);
  std::map<std::string, Route> Snapshot() const EXCLUDES(mu_);

 private:
  static constexpr size_t kKeep = 100000;
  mutable Mutex mu_;
  std::map<std::string, Route> routes_ GUARDED_BY(mu_);
  std::unordered_map<std::string, std::pair<std::vector<int64_t>, std::vector<int64_t>>> kept_
      GUARDED_BY(mu_);
  std::deque<std::string> order_ GUARDED_BY(mu_);
};

class Route {
 public:
  virtual ~Route() = default;
  // `version` "" = the route's own choice (the model's default, the experiment's pick).
  virtual Result<InferResult> Infer(const ModelEntry& entry, const std::string& version,
                                    const InferRequestMsg& request) const = 0;
  // Infer in two halves (PendingInfer). By default Begin runs the whole request and Finish hands
  // its answer back; routes whose request is one version's batch queue it instead.
  virtual void Begin(std::shared_ptr<const ModelEntry> entry, const std::string& version,
                     const InferRequestMsg& request, PendingInfer* p) const;
  virtual Result<InferResult> Finish(PendingInfer* p) const;
};

// The three routes; stateless apart from the shared services they point to.
class VersionRoute final : public Route {
 public:
  explicit VersionRoute(ModelRepository* repo) : repo_(repo) {}
  Result<InferResult> Infer(const ModelEntry& entry, const std::string& version,
                            const InferRequestMsg& request) const override;
  void Begin(std::shared_ptr<const ModelEntry> entry, const std::string& version,
             const InferRequestMsg& request, PendingInfer* p) const override;

 private:
  ModelRepository* repo_;
};

class ExperimentRoute final : public Route {
 public:
  ExperimentRoute(ModelRepository* repo, Experiments* experiments)
      : repo_(repo), experiments_(experiments) {}
  // An explicit version bypasses the split (and is not recorded in the experiment).
  Result<InferResult> Infer(const ModelEntry& entry, const std::string& version,
                            const InferRequestMsg& request) const override;
  void Begin(std::shared_ptr<const ModelEntry> entry, const std::string& version,
             const InferRequestMsg& request, PendingInfer* p) const override;
  Result<InferResult> Finish(PendingInfer* p) const override;

 private:
  ModelRepository* repo_;
  Experiments* experiments_;
};

class CascadeRoute final : public Route {
 public:
  CascadeRoute(ModelRepository* repo, CascadeStats* stats) : repo_(repo), stats_(stats) {}
  Result<InferResult> Infer(const ModelEntry& entry, const std::string& version,
                            const InferRequestMsg& request) const override;

 private:
  ModelRepository* repo_;
  CascadeStats* stats_;
};

// "name" or "name:version".
std::pair<std::string, std::string> SplitModelRef(const std::string& ref);

}  // namespace ronghe::serve
