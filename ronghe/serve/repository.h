// The model repository: `DIR/<model>/config.toml` plus `DIR/<model>/<version>/model.rhm`
// (artifacts from `ronghe train -o`), Triton's layout. Each loaded version owns its instances and
// its dynamic batcher; requests hold a shared_ptr to the version they resolved, so a reload or
// unload swaps the model's entry atomically while in-flight requests finish on the old version,
// which goes away with its last request. A failed load leaves the previous entry serving.
//
// config.toml (every key optional; docs/serving.md has the full reference):
//   [batching]  max_batch_size, max_queue_delay_us, preferred_batch_sizes, max_queue_size,
//               priority_levels, default_timeout_us, instances, dispatch   (BatcherOptions;
//               instances defaults to the cores the server may run on)
//   [versions]  policy = "latest" | "all" | "specific", latest = N, specific = [..],
//               default = version or alias used when a request names none
//   [aliases]   champion = 2, challenger = 3, ...   (any names; a request may use them as versions)
//   [cascade]   light, full, threshold   (this entry is a route, no version directories)
//   [experiment] variants, weights, sticky_key   (traffic split, see experiment.h)
//
// REPO/repository.toml (optional) holds what the whole repository accepts:
//   [policy]  require = "none" | "signed" | "certified"   (Default: "none")
//             trusted_roots = ["hub-root.json", ...]      hub root metadata the evidence must
//                                                         chain from (paths relative to REPO);
//                                                         required unless require = "none"
// Under "signed" or "certified" every version's hub.json (written by `ronghe hub deploy`) is
// checked against its model.rhm on every load and reload (hub/evidence.h); a version that fails
// is refused with the reason, and the previous entry keeps serving.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"
#include "ronghe/hub/evidence.h"
#include "ronghe/serve/batcher.h"
#include "ronghe/serve/signature.h"

namespace ronghe::nn {
class Model;
}

namespace ronghe::serve {

struct CascadeSettings {
  std::string light;  // model name (optionally "name:version")
  std::string full;
  double threshold = 0.0;       // escalate when the light model's confidence is below this
  double audit_fraction = 0.0;  // Default: 0. Share of requests also run on the full model whole,
                                // so live feedback can compare the cascade with full-only.
};

struct ExperimentSettings {
  std::string name;                   // Default: the model's name.
  std::vector<std::string> variants;  // version labels (numbers or aliases), at least two
  std::vector<double> weights;        // Default: equal. Relative traffic shares.
  std::string sticky_key = "key";     // Default: "key". Request parameter that pins a variant.
};

struct ModelSettings {
  std::string name;
  BatcherOptions batching;
  std::string version_policy = "latest";  // Default: serve the highest `latest` versions.
  int64_t latest = 1;                     // Default: 1.
  std::vector<int64_t> specific;
  std::string default_version;  // Default: "" = the champion alias if set, else the highest.
  std::map<std::string, int64_t> aliases;
  bool is_cascade = false;
  CascadeSettings cascade;
  bool has_experiment = false;
  ExperimentSettings experiment;
};

// Reads DIR/<model>/config.toml (absent: all defaults). Unknown keys are errors naming the file.
Result<ModelSettings> ReadModelSettings(const std::string& model_dir, const std::string& name);

struct RepositoryPolicy {
  hub::Requirement require = hub::Requirement::kNone;
  std::vector<hub::TrustedRoot> trusted_roots;
  std::string source;  // the file it came from ("" = the default, no file)
};

// Reads REPO/repository.toml (absent: require nothing). Unknown keys, an unknown requirement, a
// requirement without trusted roots, or a trusted root that does not verify are errors naming the
// file.
Result<RepositoryPolicy> ReadRepositoryPolicy(const std::string& repo_dir);

// Checks the version directory `version_dir` (model.rhm, hub.json) against `policy`: nothing
// when it requires nothing, else the artifact's sha256 against the signed evidence. The error
// says that the policy refused it, and why; the verdict says who signed and certified.
Result<std::string> CheckVersionPolicy(const RepositoryPolicy& policy,
                                       const std::string& version_dir);

// Latency histogram with fixed bounds (seconds), lock-free counting, for Prometheus.
class Histogram {
 public:
  static const std::vector<double>& Bounds();  // 100 us .. 10 s
  void Observe(double seconds);
  std::vector<int64_t> Counts() const;  // cumulative per bound, then +Inf
  double Sum() const;
  int64_t Count() const;

 private:
  std::atomic<int64_t> counts_[20] = {};
  std::atomic<int64_t> sum_ns_{0};
};

class ServedVersion {
 public:
  // `provenance`: what the repository's policy verified about the artifact ("" = nothing).
  static Result<std::shared_ptr<ServedVersion>> Load(const std::string& model, int64_t version,
                                                     const std::string& artifact,
                                                     const BatcherOptions& batching,
                                                     std::string provenance = "",
                                                     bool embeddings = false);
  ~ServedVersion();

  // The request path: the request's rows through the batcher; the model's raw output rows land in
  // request.output (rows x *output_row_elements floats). Allocates nothing once warm.
  Status Run(const InferRequest& request, int64_t* output_row_elements);
  // The same in two halves, for a caller that starts several requests before waiting on any:
  // Submit queues without waking a dispatcher; Await runs queued batches on the calling thread
  // while an instance is idle (DynamicBatcher::Submit/Await).
  void Submit(const InferRequest& request, Ticket* ticket);
  Status Await(Ticket* ticket, int64_t* output_row_elements);
  // The same for callers that hold a tensor (the cascade's subsets of rows): [rows, ...] ->
  // [rows, outputs].
  Result<at::Tensor> Infer(const at::Tensor& batch, int priority, int64_t timeout_us);

  const std::string& model() const { return model_; }
  int64_t version() const { return version_; }
  const Signature& signature() const { return signature_; }
  const nlohmann::json& manifest() const { return manifest_; }
  const std::string& fingerprint() const { return fingerprint_; }
  // Who signed and certified the artifact, when the repository's policy checked it ("" else).
  const std::string& provenance() const { return provenance_; }
  const BatcherOptions& batching() const { return batching_; }
  // With RepositoryOptions::embeddings, each output row is `outputs()` logits then the embedding.
  bool embeddings() const { return embeddings_; }
  int64_t outputs() const { return outputs_; }
  BatcherStats BatchStats() const;
  int64_t QueueSize() const;

  std::atomic<int64_t> success{0}, failure{0};
  Histogram latency;  // request seconds, end to end inside the server

 private:
  ServedVersion() = default;
  std::string model_;
  int64_t version_ = 0;
  nlohmann::json manifest_;
  Signature signature_;
  std::string fingerprint_;
  std::string provenance_;
  bool embeddings_ = false;
  int64_t outputs_ = 0;
  BatcherOptions batching_;
  std::vector<std::unique_ptr<nn::Model>> instances_;
  std::unique_ptr<DynamicBatcher> batcher_;
};

// One model's loaded state; immutable once published (a reload publishes a new one).
struct ModelEntry {
  ModelSettings settings;
  std::map<int64_t, std::shared_ptr<ServedVersion>> versions;
  std::string fingerprint;  // of config.toml and the artifacts, for the watch
};

struct RepositoryOptions {
  std::string dir;
  int64_t max_batch_size = -1;      // Default: -1 = each model's own; >= 0 overrides all (0 = off).
  int64_t max_queue_delay_us = -1;  // Default: -1 = each model's own; >= 0 overrides all.
  int instances = 0;                // Default: 0 = each model's own; > 0 overrides all.
  bool embeddings = false;  // Default: false. Each output row also carries the model's embedding
                            // (the output layer's input) after its logits: for callers that
                            // measure distances, like the stream line's novelty. mlp and cnn only.
};

struct ModelIndexEntry {
  std::string name;
  std::string state;   // "READY" | "UNAVAILABLE" (failed load) | "UNLOADED"
  std::string reason;  // why not ready; for READY, why the last reload failed (the old entry
                       // still serves)
  std::vector<int64_t> versions;
};

class ModelRepository {
 public:
  // Loads every model; the first failure is the error (a server that starts is complete).
  static Result<std::unique_ptr<ModelRepository>> Open(const RepositoryOptions& options);
  ~ModelRepository();

  // `version`: "" (the model's default), a number, or an alias. NotFound names what exists.
  Result<std::shared_ptr<ServedVersion>> Resolve(const std::string& model,
                                                 const std::string& version) const;
  Result<std::shared_ptr<const ModelEntry>> Entry(const std::string& model) const;

  // (Re)reads the model's directory and loads what changed beside what serves, then publishes
  // the new entry in one swap. On failure the previous entry keeps serving and the model's
  // index entry carries the reason.
  Status Load(const std::string& model);
  Status Unload(const std::string& model);
  std::vector<ModelIndexEntry> Index() const;
  std::vector<std::string> LoadedModels() const;

  // Polls the directory every `interval_s`: loads new or changed models, unloads removed ones.
  void StartWatch(double interval_s);
  void StopWatch();
  int64_t reloads() const { return reloads_.load(); }
  int64_t load_failures() const { return load_failures_.load(); }  // explicit and by the watch
  const RepositoryOptions& options() const { return options_; }
  const RepositoryPolicy& policy() const { return policy_; }

 private:
  explicit ModelRepository(RepositoryOptions options) : options_(std::move(options)) {}
  std::string Fingerprint(const std::string& model) const;
  std::vector<std::string> ModelDirs() const;

  RepositoryOptions options_;
  RepositoryPolicy policy_;             // read once, at Open
  Mutex load_mu_ ACQUIRED_BEFORE(mu_);  // one load at a time
  mutable Mutex mu_;                    // held only to copy or swap pointers
  std::map<std::string, std::shared_ptr<const ModelEntry>> entries_ GUARDED_BY(mu_);
  std::map<std::string, std::string> failures_
      GUARDED_BY(mu_);  // model -> why its last load failed
  std::map<std::string, std::string> unloaded_
      GUARDED_BY(mu_);  // explicitly unloaded (the watch leaves them)
  std::map<std::string, std::string> failed_fingerprints_
      GUARDED_BY(mu_);  // the watch retries only on change
  std::thread watch_;
  Mutex watch_mu_;
  CondVar watch_cv_;
  bool watch_stop_ GUARDED_BY(watch_mu_) = false;
  std::atomic<int64_t> reloads_{0};
  std::atomic<int64_t> load_failures_{0};
  std::atomic<bool> serving_{false};  // Open() finished: later failures are reloads
};

}  // namespace ronghe::serve
