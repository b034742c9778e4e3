#include "ronghe/serve/repository.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/base/thread_pool.h"
#include "ronghe/nn/artifact.h"

namespace ronghe::serve {

namespace fs = std::filesystem;

namespace {

bool IsVersionName(const std::string& s) {
  if (s.empty() || s.size() > 18 || s[0] == '0') return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool IsModelName(const std::string& s) {
  if (s.empty() || s.size() > 128 || s[0] == '.') return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

// "mtime_ns:size" of a file, "" when absent: cheap enough to poll, and a rewrite by rename or in
// place changes it.
std::string FileStamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec) +
         ":" + std::to_string(static_cast<int64_t>(st.st_size));
}

// The stamp of a version directory: its artifact and its hub evidence, so that replacing either
// is a change the watch reloads (and the policy checks again).
std::string VersionStamp(const std::string& artifact) {
  return FileStamp(artifact) + "|" +
         FileStamp(fs::path(artifact).parent_path().string() + "/hub.json");
}

// Versions present on disk (directories named 1, 2, ... holding model.rhm), ascending.
std::vector<int64_t> DiskVersions(const std::string& model_dir) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec)) {
    std::string n = e.path().filename().string();
    if (e.is_directory(ec) && IsVersionName(n) && fs::exists(e.path() / "model.rhm", ec)) {
      out.push_back(std::stoll(n));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool SameBatching(const BatcherOptions& a, const BatcherOptions& b) {
  return a.max_batch_size == b.max_batch_size && a.max_queue_delay_us == b.max_queue_delay_us &&
         a.preferred_batch_sizes == b.preferred_batch_sizes &&
         a.max_queue_size == b.max_queue_size && a.priority_levels == b.priority_levels &&
         a.default_timeout_us == b.default_timeout_us && a.instances == b.instances &&
         a.dispatch == b.dispatch;
}

std::string JoinVersions(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s.empty() ? "none" : s;
}

}  // namespace

Result<RepositoryPolicy> ReadRepositoryPolicy(const std::string& repo_dir) {
  RepositoryPolicy p;
  const std::string path = repo_dir + "/repository.toml";
  std::error_code ec;
  if (!fs::exists(path, ec)) return p;
  p.source = path;
  ASSIGN_OR_RETURN(Config cfg, Config::Load(path));
  std::string require = "none";
  std::vector<std::string> roots;
  RETURN_IF_ERROR(cfg.Get("policy.require", &require));
  if (cfg.Has("policy.trusted_roots")) {
    RETURN_IF_ERROR(cfg.Get("policy.trusted_roots", &roots));
  }
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  auto r = hub::ParseRequirement(require);
  if (!r.ok()) return cfg.ValueError("policy.require", r.status().message());
  p.require = *r;
  if (p.require != hub::Requirement::kNone && roots.empty()) {
    return cfg.ValueError(
        "policy.trusted_roots",
        std::string("require = \"") + hub::RequirementName(p.require) +
            "\" needs the root metadata of the hubs to trust (e.g. [\"hub-root.json\"])");
  }
  for (const std::string& root : roots) {
    const std::string file = !root.empty() && root[0] == '/' ? root : repo_dir + "/" + root;
    auto t = hub::ReadTrustedRoot(file);
    if (!t.ok()) return cfg.ValueError("policy.trusted_roots", t.status().message());
    p.trusted_roots.push_back(std::move(t).value());
  }
  return p;
}

Result<std::string> CheckVersionPolicy(const RepositoryPolicy& policy,
                                       const std::string& version_dir) {
  if (policy.require == hub::Requirement::kNone) return std::string();
  const std::string refused = version_dir + ": refused by the repository's policy (require = \"" +
                              hub::RequirementName(policy.require) + "\" in " + policy.source +
                              "): ";
  const std::string evidence = version_dir + "/hub.json";
  std::error_code ec;
  if (!fs::exists(evidence, ec)) {
    return PermissionDenied(refused +
                            "no hub.json: not installed from a hub (use `ronghe hub deploy`)");
  }
  const auto size = fs::file_size(evidence, ec);
  if (ec || size > (64u << 20)) return PermissionDenied(refused + "hub.json unreadable or too big");
  auto text = ReadFile(evidence);
  if (!text.ok()) return PermissionDenied(refused + text.status().message());
  nlohmann::json deployed = nlohmann::json::parse(*text, nullptr, false);
  if (deployed.is_discarded()) return PermissionDenied(refused + "hub.json is not valid JSON");
  const std::string artifact = version_dir + "/model.rhm";
  auto sha = Sha256FileHex(artifact);
  if (!sha.ok()) return PermissionDenied(refused + sha.status().message());
  const auto length = fs::file_size(artifact, ec);
  if (ec) return PermissionDenied(refused + artifact + ": " + ec.message());
  auto verdict = hub::VerifyEvidence(deployed, policy.trusted_roots, *sha,
                                     static_cast<int64_t>(length), policy.require, version_dir);
  if (!verdict.ok()) {
    std::string why = verdict.status().message();
    if (why.rfind(version_dir + ": ", 0) == 0) why = why.substr(version_dir.size() + 2);
    return Status(verdict.status().code(), refused + why);
  }
  return verdict->Summary();
}

Result<ModelSettings> ReadModelSettings(const std::string& model_dir, const std::string& name) {
  ModelSettings s;
  s.name = name;
  s.experiment.name = name;
  // By default a model's instances use every core the server may run on (one intra-op thread
  // each, see ServeJobRequest::threads): batched or not, requests run on all of them.
  s.batching.instances = DefaultThreads();
  std::string path = model_dir + "/config.toml";
  if (!fs::exists(path)) return s;
  ASSIGN_OR_RETURN(Config cfg, Config::Load(path));
  BatcherOptions& b = s.batching;
  RETURN_IF_ERROR(cfg.Get("batching.max_batch_size", &b.max_batch_size));
  RETURN_IF_ERROR(cfg.Get("batching.max_queue_delay_us", &b.max_queue_delay_us));
  RETURN_IF_ERROR(cfg.Get("batching.preferred_batch_sizes", &b.preferred_batch_sizes));
  RETURN_IF_ERROR(cfg.Get("batching.max_queue_size", &b.max_queue_size));
  RETURN_IF_ERROR(cfg.Get("batching.priority_levels", &b.priority_levels));
  RETURN_IF_ERROR(cfg.Get("batching.default_timeout_us", &b.default_timeout_us));
  RETURN_IF_ERROR(cfg.Get("batching.instances", &b.instances));
  std::string dispatch = DispatchPolicyName(b.dispatch);
  RETURN_IF_ERROR(cfg.Get("batching.dispatch", &dispatch));
  if (auto d = ParseDispatchPolicy(dispatch); d.ok()) {
    b.dispatch = *d;
  } else {
    return cfg.ValueError("batching.dispatch", d.status().message());
  }
  if (Status st = ValidateBatcherOptions(b); !st.ok()) {
    return InvalidArgument(path + ": [batching]: " + st.message());
  }
  RETURN_IF_ERROR(cfg.Get("versions.policy", &s.version_policy));
  RETURN_IF_ERROR(cfg.Get("versions.latest", &s.latest));
  RETURN_IF_ERROR(cfg.Get("versions.specific", &s.specific));
  RETURN_IF_ERROR(cfg.Get("versions.default", &s.default_version));
  if (s.version_policy != "latest" && s.version_policy != "all" && s.version_policy != "specific") {
    return cfg.ValueError("versions.policy",
                          "'" + s.version_policy + "' is not latest, all or specific");
  }
  if (s.latest < 1) return cfg.ValueError("versions.latest", "must be >= 1");
  if (s.version_policy == "specific" && s.specific.empty()) {
    return cfg.ValueError("versions.specific", "policy \"specific\" needs a non-empty list");
  }
  for (const std::string& alias : cfg.Keys("aliases")) {
    int64_t v = 0;
    RETURN_IF_ERROR(cfg.Get("aliases." + alias, &v));
    if (v < 1) return cfg.ValueError("aliases." + alias, "must be a version number >= 1");
    if (IsVersionName(alias))
      return cfg.ValueError("aliases." + alias, "an alias cannot be a number");
    s.aliases[alias] = v;
  }
  if (cfg.Has("cascade")) {
    s.is_cascade = true;
    RETURN_IF_ERROR(cfg.GetRequired("cascade.light", &s.cascade.light));
    RETURN_IF_ERROR(cfg.GetRequired("cascade.full", &s.cascade.full));
    RETURN_IF_ERROR(cfg.GetRequired("cascade.threshold", &s.cascade.threshold));
    RETURN_IF_ERROR(cfg.Get("cascade.audit_fraction", &s.cascade.audit_fraction));
    if (!(s.cascade.threshold >= 0 && s.cascade.threshold <= 1)) {
      return cfg.ValueError("cascade.threshold", "must be in [0, 1]");
    }
    if (!(s.cascade.audit_fraction >= 0 && s.cascade.audit_fraction <= 1)) {
      return cfg.ValueError("cascade.audit_fraction", "must be in [0, 1]");
    }
  }
  if (cfg.Has("experiment")) {
    s.has_experiment = true;
    ExperimentSettings& e = s.experiment;
    RETURN_IF_ERROR(cfg.Get("experiment.name", &e.name));
    RETURN_IF_ERROR(cfg.GetRequired("experiment.variants", &e.variants));
    RETURN_IF_ERROR(cfg.Get("experiment.weights", &e.weights));
    RETURN_IF_ERROR(cfg.Get("experiment.sticky_key", &e.sticky_key));
    if (e.variants.size() < 2)
      return cfg.ValueError("experiment.variants", "needs at least two variants");
    if (e.weights.empty()) e.weights.assign(e.variants.size(), 1.0);
    if (e.weights.size() != e.variants.size()) {
      return cfg.ValueError("experiment.weights", "needs one weight per variant");
    }
    double total = 0;
    for (double w : e.weights) {
      if (!(w >= 0)) return cfg.ValueError("experiment.weights", "weights must be >= 0");
      total += w;
    }
    if (!(total > 0))
      return cfg.ValueError("experiment.weights", "at least one weight must be > 0");
    if (!IsModelName(e.name))
      return cfg.ValueError("experiment.name", "use letters, digits, '-', '_', '.'");
  }
  if (s.is_cascade && s.has_experiment) {
    return InvalidArgument(path + ": a model is either a cascade or has an experiment, not both");
  }
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  return s;
}

// ---- Histogram ----

const std::vector<double>& Histogram::Bounds() {
  static const std::vector<double> b = {1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
                                        5e-2, 0.1,    0.25, 0.5,  1.0,    2.5,  5.0,  10.0};
  return b;
}

void Histogram::Observe(double seconds) {
  const auto& b = Bounds();
  size_t i = std::lower_bound(b.begin(), b.end(), seconds) - b.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<int64_t>(seconds * 1e9), std::memory_order_relaxed);
}

std::vector<int64_t> Histogram::Counts() const {
  std::vector<int64_t> out;
  int64_t run = 0;
  for (size_t i = 0; i <= Bounds().size(); ++i) {
    run += counts_[i].load(std::memory_order_relaxed);
    out.push_back(run);
  }
  return out;
}

double Histogram::Sum() const { return sum_ns_.load(std::memory_order_relaxed) / 1e9; }
int64_t Histogram::Count() const { return Counts().back(); }

// ---- ServedVersion ----

Result<std::shared_ptr<ServedVersion>> ServedVersion::Load(
    const std::string& model, int64_t version, const std::string& artifact,
    const BatcherOptions& batching, std::string provenance, bool embeddings) {
  std::shared_ptr<ServedVersion> v(new ServedVersion());
  v->model_ = model;
  v->version_ = version;
  v->batching_ = batching;
  v->fingerprint_ = VersionStamp(artifact);
  v->provenance_ = std::move(provenance);
  v->embeddings_ = embeddings;
  for (int i = 0; i < batching.instances; ++i) {
    ASSIGN_OR_RETURN(nn::LoadedArtifact a, nn::LoadArtifact(artifact));
    if (i == 0) v->manifest_ = std::move(a.manifest);
    v->instances_.push_back(std::move(a.model));
  }
  auto sig = Signature::FromManifest(v->manifest_);
  if (!sig.ok()) return InvalidArgument(artifact + ": " + sig.status().message());
  v->signature_ = std::move(sig).value();
  // One forward pass before the version is published: a model that cannot run fails its load
  // (and the old version keeps serving) instead of failing requests.
  try {
    c10::InferenceMode guard;
    std::vector<int64_t> shape = {1};
    for (int64_t d : v->signature_.input_shape()) shape.push_back(d);
    for (auto& m : v->instances_) {
      at::Tensor out = m->Forward(at::zeros(shape));
      if (out.dim() != 2 || out.size(0) != 1) {
        return InvalidArgument(artifact +
                               ": the model does not give one row of outputs per input row");
      }
      v->outputs_ = out.size(1);
      if (embeddings) (void)m->Embed(at::zeros(shape));
    }
  } catch (const std::exception& e) {
    return InvalidArgument(artifact + ": the model fails on a zero input: " + e.what());
  }
  ServedVersion* raw = v.get();
  auto batcher = DynamicBatcher::Create(batching, [raw](Batch& b) -> Status {
    try {
      c10::InferenceMode guard;
      // The batch buffer as a tensor without a copy; shape [rows, ...input_shape].
      const auto& in_shape = raw->signature_.input_shape();
      int64_t shape[9];
      shape[0] = b.rows;
      const size_t dims = std::min<size_t>(in_shape.size(), 8);
      std::copy(in_shape.begin(), in_shape.begin() + static_cast<std::ptrdiff_t>(dims), shape + 1);
      at::Tensor x =
          at::from_blob(const_cast<float*>(b.input), at::IntArrayRef(shape, dims + 1), at::kFloat);
      nn::Model& m = *raw->instances_[static_cast<size_t>(b.instance)];
      at::Tensor y;
      if (raw->embeddings_) {
        at::Tensor e = m.Embed(x);
        y = at::cat({m.Head(e), e.to(at::kFloat)}, 1);
      } else {
        y = m.Forward(x);
      }
      if (y.scalar_type() != at::kFloat) y = y.to(at::kFloat);
      y = y.contiguous();
      if (y.dim() != 2 || y.size(0) != b.rows) {
        return Internal("model " + raw->model_ + " version " + std::to_string(raw->version_) +
                        " gave " + std::to_string(y.dim() ? y.size(0) : 0) +
                        " output rows for a batch of " + std::to_string(b.rows));
      }
      b.output_row_elements = y.size(1);
      const size_t n = static_cast<size_t>(y.numel());
      if (b.output->size() < n) b.output->resize(static_cast<size_t>(b.max_rows * y.size(1)));
      std::memcpy(b.output->data(), y.data_ptr<float>(), n * sizeof(float));
      return Status::OK();
    } catch (const std::exception& e) {
      return Internal("model " + raw->model_ + " version " + std::to_string(raw->version_) +
                      " failed: " + e.what());
    }
  });
  if (!batcher.ok()) return batcher.status();
  v->batcher_ = std::move(batcher).value();
  return v;
}

ServedVersion::~ServedVersion() {
  if (batcher_) batcher_->Shutdown();
}

Status ServedVersion::Run(const InferRequest& request, int64_t* output_row_elements) {
  Ticket t;
  Status st = batcher_->Run(request, &t);
  *output_row_elements = t.output_row_elements();
  return st;
}

void ServedVersion::Submit(const InferRequest& request, Ticket* ticket) {
  batcher_->Submit(request, ticket, /*caller_runs=*/true);
}

Status ServedVersion::Await(Ticket* ticket, int64_t* output_row_elements) {
  Status st = batcher_->Await(ticket);
  *output_row_elements = ticket->output_row_elements();
  return st;
}

Result<at::Tensor> ServedVersion::Infer(const at::Tensor& batch, int priority, int64_t timeout_us) {
  at::Tensor x = batch.to(at::kFloat).contiguous();
  if (x.dim() < 1 || x.size(0) < 1) return InvalidArgument("the input needs at least one row");
  InferRequest r;
  r.input = x.data_ptr<float>();
  r.rows = x.size(0);
  r.row_elements = x.numel() / x.size(0);
  std::vector<float> out;
  r.output = &out;
  r.priority = priority;
  r.timeout_us = timeout_us;
  int64_t width = 0;
  RETURN_IF_ERROR(Run(r, &width));
  at::Tensor y = at::empty({r.rows, width}, at::kFloat);
  std::memcpy(y.data_ptr<float>(), out.data(), out.size() * sizeof(float));
  return y;
}

BatcherStats ServedVersion::BatchStats() const { return batcher_->Stats(); }
int64_t ServedVersion::QueueSize() const { return batcher_->QueueSize(); }

// ---- ModelRepository ----

Result<std::unique_ptr<ModelRepository>> ModelRepository::Open(const RepositoryOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(options.dir, ec)) {
    return NotFound("model repository '" + options.dir + "' is not a directory");
  }
  std::unique_ptr<ModelRepository> repo(new ModelRepository(options));
  ASSIGN_OR_RETURN(repo->policy_, ReadRepositoryPolicy(options.dir));
  std::vector<std::string> dirs = repo->ModelDirs();
  if (dirs.empty())
    return NotFound("model repository '" + options.dir + "' holds no model directory");
  for (const std::string& m : dirs) RETURN_IF_ERROR(repo->Load(m));
  repo->serving_ = true;
  return repo;
}

ModelRepository::~ModelRepository() { StopWatch(); }

std::vector<std::string> ModelRepository::ModelDirs() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.dir, ec)) {
    std::string n = e.path().filename().string();
    if (e.is_directory(ec) && IsModelName(n)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ModelRepository::Fingerprint(const std::string& model) const {
  std::string dir = options_.dir + "/" + model;
  std::string f = "config=" + FileStamp(dir + "/config.toml");
  for (int64_t v : DiskVersions(dir)) {
    f += ";" + std::to_string(v) + "=" + VersionStamp(dir + "/" + std::to_string(v) + "/model.rhm");
  }
  return f;
}

Status ModelRepository::Load(const std::string& model) {
  MutexLock serial(&load_mu_);
  // A failed load: recorded for the index, counted for /metrics, logged, and answered as
  // Unavailable (503: the model cannot serve what it was asked to load), whatever the cause.
  // (At start-up the error itself is the answer: the server does not start.)
  auto fail = [&](Status st) {
    {
      MutexLock l(&mu_);
      failures_[model] = st.message();
    }
    if (!serving_.load()) return st;
    load_failures_.fetch_add(1);
    std::fprintf(stderr, "ronghe serve: model '%s' failed to load: %s\n", model.c_str(),
                 st.message().c_str());
    return Unavailable(st.message());
  };
  if (!IsModelName(model))
    return InvalidArgument("'" + model.substr(0, 64) + "' is not a model name");
  std::string dir = options_.dir + "/" + model;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return NotFound("no model '" + model + "' in repository " + options_.dir);
  std::string fingerprint = Fingerprint(model);
  auto settings = ReadModelSettings(dir, model);
  if (!settings.ok()) return fail(settings.status());
  ModelSettings s = std::move(settings).value();
  if (options_.max_batch_size >= 0) s.batching.max_batch_size = options_.max_batch_size;
  if (options_.max_queue_delay_us >= 0) s.batching.max_queue_delay_us = options_.max_queue_delay_us;
  if (options_.instances > 0) s.batching.instances = options_.instances;
  // An override can make configured preferred sizes impossible; they no longer apply then.
  auto& pref = s.batching.preferred_batch_sizes;
  pref.erase(std::remove_if(pref.begin(), pref.end(),
                            [&](int64_t p) {
                              return s.batching.max_batch_size == 0 ||
                                     p > s.batching.max_batch_size;
                            }),
             pref.end());

  std::shared_ptr<const ModelEntry> old;
  {
    MutexLock l(&mu_);
    auto it = entries_.find(model);
    if (it != entries_.end()) old = it->second;
  }
  auto entry = std::make_shared<ModelEntry>();
  entry->fingerprint = fingerprint;
  if (!s.is_cascade) {
    std::vector<int64_t> disk = DiskVersions(dir);
    if (disk.empty())
      return fail(NotFound(dir + ": no version directory (1/, 2/, ...) holding model.rhm"));
    std::vector<int64_t> chosen;
    if (s.version_policy == "all") {
      chosen = disk;
    } else if (s.version_policy == "latest") {
      size_t n = std::min(disk.size(), static_cast<size_t>(s.latest));
      chosen.assign(disk.end() - static_cast<std::ptrdiff_t>(n), disk.end());
    } else {
      for (int64_t v : s.specific) {
        if (!std::binary_search(disk.begin(), disk.end(), v)) {
          return fail(NotFound(dir + "/config.toml: versions.specific names version " +
                               std::to_string(v) +
                               ", which is not on disk (there: " + JoinVersions(disk) + ")"));
        }
        chosen.push_back(v);
      }
    }
    for (int64_t v : chosen) {
      std::string artifact = dir + "/" + std::to_string(v) + "/model.rhm";
      if (old) {
        auto it = old->versions.find(v);
        if (it != old->versions.end() && it->second->fingerprint() == VersionStamp(artifact) &&
            SameBatching(it->second->batching(), s.batching)) {
          entry->versions[v] = it->second;  // unchanged: keeps serving, no reload
          continue;
        }
      }
      // The policy checks the bytes' digest; the stamp taken before it must still hold after the
      // load, or the file changed in between and what loaded is not what was checked.
      const std::string stamp = VersionStamp(artifact);
      auto verdict = CheckVersionPolicy(policy_, dir + "/" + std::to_string(v));
      if (!verdict.ok()) return fail(verdict.status());
      auto loaded =
          ServedVersion::Load(model, v, artifact, s.batching, *verdict, options_.embeddings);
      if (!loaded.ok()) return fail(loaded.status());
      if (VersionStamp(artifact) != stamp) {
        return fail(Unavailable(artifact + ": changed while it was being checked and loaded"));
      }
      if (!verdict->empty()) {
        std::fprintf(stderr, "ronghe serve: %s version %lld: %s\n", model.c_str(),
                     static_cast<long long>(v), verdict->c_str());
      }
      entry->versions[v] = std::move(loaded).value();
    }
    for (const auto& [alias, v] : s.aliases) {
      if (!entry->versions.count(v)) {
        return fail(InvalidArgument(
            dir + "/config.toml: alias '" + alias + "' points at version " + std::to_string(v) +
            ", which is not loaded (loaded: " + JoinVersions(chosen) + ")"));
      }
    }
  }
  entry->settings = std::move(s);
  // Every label the entry itself uses must resolve before it is published.
  auto check_label = [&](const std::string& label, const std::string& key) -> Status {
    if (label.empty()) return Status::OK();
    if (IsVersionName(label)) {
      if (entry->versions.count(std::stoll(label))) return Status::OK();
    } else if (entry->settings.aliases.count(label)) {
      return Status::OK();
    }
    return InvalidArgument(dir + "/config.toml: " + key + " = \"" + label +
                           "\" is neither a loaded version nor an alias");
  };
  if (Status st = check_label(entry->settings.default_version, "versions.default"); !st.ok())
    return fail(st);
  if (entry->settings.has_experiment) {
    for (const auto& v : entry->settings.experiment.variants) {
      if (Status st = check_label(v, "experiment.variants"); !st.ok()) return fail(st);
    }
  }
  {
    MutexLock l(&mu_);
    entries_[model] = std::move(entry);  // the switch: one pointer swap
    failures_.erase(model);
    unloaded_.erase(model);
  }
  if (old) reloads_.fetch_add(1);
  return Status::OK();
}

Status ModelRepository::Unload(const std::string& model) {
  MutexLock serial(&load_mu_);
  std::shared_ptr<const ModelEntry> old;
  {
    MutexLock l(&mu_);
    auto it = entries_.find(model);
    if (it == entries_.end()) return NotFound("model '" + model.substr(0, 128) + "' is not loaded");
    old = std::move(it->second);
    entries_.erase(it);
    unloaded_[model] = "unloaded by request";
  }
  return Status::OK();  // `old` drops here; its versions go when their last request does
}

Result<std::shared_ptr<const ModelEntry>> ModelRepository::Entry(const std::string& model) const {
  MutexLock l(&mu_);
  auto it = entries_.find(model);
  if (it != entries_.end()) return it->second;
  if (unloaded_.count(model)) return Unavailable("model '" + model + "' is unloaded");
  auto f = failures_.find(model);
  if (f != failures_.end())
    return Unavailable("model '" + model + "' failed to load: " + f->second);
  std::string names;
  for (const auto& [n, e] : entries_) names += (names.empty() ? "" : ", ") + n;
  return NotFound("unknown model '" + model.substr(0, 128) +
                  "' (serving: " + (names.empty() ? "none" : names) + ")");
}

Result<std::shared_ptr<ServedVersion>> ModelRepository::Resolve(const std::string& model,
                                                                const std::string& version) const {
  ASSIGN_OR_RETURN(auto entry, Entry(model));
  const ModelSettings& s = entry->settings;
  if (s.is_cascade)
    return InvalidArgument("model '" + model + "' is a cascade route and has no versions");
  std::vector<int64_t> loaded;
  for (const auto& [v, p] : entry->versions) loaded.push_back(v);
  std::string label = version.empty() ? s.default_version : version;
  if (label.empty())
    label = s.aliases.count("champion") ? "champion" : std::to_string(loaded.back());
  int64_t v = 0;
  if (IsVersionName(label)) {
    v = std::stoll(label);
  } else if (auto a = s.aliases.find(label); a != s.aliases.end()) {
    v = a->second;
  } else {
    std::string aliases;
    for (const auto& [n, x] : s.aliases) aliases += (aliases.empty() ? "" : ", ") + n;
    return NotFound("model '" + model + "' has no version or alias '" + label.substr(0, 64) +
                    "' (versions: " + JoinVersions(loaded) +
                    "; aliases: " + (aliases.empty() ? "none" : aliases) + ")");
  }
  auto it = entry->versions.find(v);
  if (it == entry->versions.end()) {
    return NotFound("model '" + model + "' has no version " + std::to_string(v) +
                    " loaded (loaded: " + JoinVersions(loaded) + ")");
  }
  return it->second;
}

std::vector<ModelIndexEntry> ModelRepository::Index() const {
  std::set<std::string> names;
  for (const auto& n : ModelDirs()) names.insert(n);
  MutexLock l(&mu_);
  for (const auto& [n, e] : entries_) names.insert(n);
  std::vector<ModelIndexEntry> out;
  for (const auto& n : names) {
    ModelIndexEntry e;
    e.name = n;
    if (auto it = entries_.find(n); it != entries_.end()) {
      e.state = "READY";
      for (const auto& [v, p] : it->second->versions) e.versions.push_back(v);
      if (auto f = failures_.find(n); f != failures_.end())
        e.reason = "the last reload failed, the previous entry serves: " + f->second;
    } else if (auto f = failures_.find(n); f != failures_.end()) {
      e.state = "UNAVAILABLE";
      e.reason = f->second;
    } else {
      e.state = "UNLOADED";
      if (auto u = unloaded_.find(n); u != unloaded_.end()) e.reason = u->second;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> ModelRepository::LoadedModels() const {
  MutexLock l(&mu_);
  std::vector<std::string> out;
  for (const auto& [n, e] : entries_) out.push_back(n);
  return out;
}

void ModelRepository::StartWatch(double interval_s) {
  StopWatch();
  {
    MutexLock l(&watch_mu_);
    watch_stop_ = false;
  }
  auto interval = std::chrono::duration<double>(interval_s);
  watch_ = std::thread([this, interval] {
    MutexLock l(&watch_mu_);
    while (!watch_cv_.WaitFor(&watch_mu_, interval, [&] {
      watch_mu_.AssertHeld();
      return watch_stop_;
    })) {
      l.Unlock();
      std::set<std::string> on_disk;
      for (const auto& m : ModelDirs()) {
        on_disk.insert(m);
        std::string fp = Fingerprint(m);
        std::shared_ptr<const ModelEntry> cur;
        bool skip = false;
        {
          MutexLock g(&mu_);
          auto it = entries_.find(m);
          if (it != entries_.end()) cur = it->second;
          skip = unloaded_.count(m) > 0;
          // A failed load is retried only when the files change again.
          auto f = failed_fingerprints_.find(m);
          if (f != failed_fingerprints_.end() && f->second == fp) skip = true;
        }
        if (skip || (cur && cur->fingerprint == fp)) continue;
        Status st = Load(m);
        MutexLock g(&mu_);
        if (st.ok())
          failed_fingerprints_.erase(m);
        else
          failed_fingerprints_[m] = fp;
      }
      for (const auto& m : LoadedModels()) {
        if (on_disk.count(m) || !Unload(m).ok()) continue;
        MutexLock g(&mu_);
        unloaded_.erase(m);  // gone from disk: it loads again if it comes back
      }
      l.Lock();
    }
  });
}

void ModelRepository::StopWatch() {
  {
    MutexLock l(&watch_mu_);
    watch_stop_ = true;
  }
  watch_cv_.NotifyAll();
  if (watch_.joinable()) watch_.join();
}

}  // namespace ronghe::serve
