#include "ronghe/serve/server.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <random>
#include <sstream>
#include <unordered_map>

#include "ronghe/serve/experiment.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// "name" or "name:version".
std::pair<std::string, std::string> SplitRef(const std::string& ref) {
  auto colon = ref.find(':');
  if (colon == std::string::npos) return {ref, ""};
  return {ref.substr(0, colon), ref.substr(colon + 1)};
}

// Prometheus label values escape backslash, quote and newline.
std::string Esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

std::string Num(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

Result<int64_t> IntParameter(const json& params, const char* name, int64_t dflt) {
  auto it = params.find(name);
  if (it == params.end()) return dflt;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return InvalidArgument(std::string("parameters.") + name + ": must be a non-negative integer");
  }
  return it->get<int64_t>();
}

}  // namespace

int HttpStatusOf(const Status& st) {
  switch (st.code()) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kResourceExhausted: return 429;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 504;
    case StatusCode::kFailedPrecondition: return 409;
    default: return 500;
  }
}

// Live statistics of cascade routes. Predictions are kept (bounded) per request id so feedback
// labels can score the cascade, and, on audited requests, the full model alone.
class CascadeStats {
 public:
  struct Route {
    int64_t requests = 0, rows = 0, escalated = 0, audited_rows = 0;
    int64_t labeled = 0, correct = 0;                     // cascade, all labeled rows
    int64_t audit_labeled = 0, audit_cascade_correct = 0, audit_full_correct = 0;  // paired
  };
  void Count(const std::string& route, int64_t rows, int64_t escalated, int64_t audited) {
    std::lock_guard<std::mutex> l(mu_);
    Route& r = routes_[route];
    ++r.requests;
    r.rows += rows;
    r.escalated += escalated;
    r.audited_rows += audited;
  }
  void Remember(const std::string& route, const std::string& id, std::vector<int64_t> cascade,
                std::vector<int64_t> full) {
    if (id.empty()) return;
    std::lock_guard<std::mutex> l(mu_);
    std::string k = route + '\0' + id;
    if (!kept_.count(k)) order_.push_back(k);
    kept_[k] = {std::move(cascade), std::move(full)};
    while (order_.size() > kKeep) {
      kept_.erase(order_.front());
      order_.pop_front();
    }
  }
  Status Label(const std::string& route, const std::string& id, const std::vector<int64_t>& labels) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = kept_.find(route + '\0' + id);
    if (it == kept_.end()) {
      return NotFound("cascade '" + route + "' has no recent request with id '" + id.substr(0, 128) + "'");
    }
    const auto& [cascade, full] = it->second;
    if (labels.size() != cascade.size()) {
      return InvalidArgument("request '" + id.substr(0, 128) + "' had " + std::to_string(cascade.size()) +
                             " rows, feedback gives " + std::to_string(labels.size()) + " labels");
    }
    Route& r = routes_[route];
    for (size_t i = 0; i < labels.size(); ++i) {
      ++r.labeled;
      r.correct += cascade[i] == labels[i];
      if (!full.empty()) {
        ++r.audit_labeled;
        r.audit_cascade_correct += cascade[i] == labels[i];
        r.audit_full_correct += full[i] == labels[i];
      }
    }
    kept_.erase(it);  // one label per request
    return Status::OK();
  }
  std::map<std::string, Route> Snapshot() const {
    std::lock_guard<std::mutex> l(mu_);
    return routes_;
  }

 private:
  static constexpr size_t kKeep = 100000;
  mutable std::mutex mu_;
  std::map<std::string, Route> routes_;
  std::unordered_map<std::string, std::pair<std::vector<int64_t>, std::vector<int64_t>>> kept_;
  std::deque<std::string> order_;
};

Result<std::unique_ptr<InferenceServer>> InferenceServer::Create(const ServerOptions& options) {
  std::unique_ptr<InferenceServer> s(new InferenceServer());
  s->options_ = options;
  ASSIGN_OR_RETURN(s->repo_, ModelRepository::Open(options.repository));
  ASSIGN_OR_RETURN(s->experiments_, Experiments::Open(options.store_path));
  s->cascades_ = std::make_unique<CascadeStats>();
  for (const std::string& m : s->repo_->LoadedModels()) {
    ASSIGN_OR_RETURN(auto entry, s->repo_->Entry(m));
    if (entry->settings.has_experiment) {
      RETURN_IF_ERROR(s->experiments_->Register(m, entry->settings.experiment));
    }
    if (entry->settings.is_cascade) {
      for (const auto& ref : {entry->settings.cascade.light, entry->settings.cascade.full}) {
        auto [name, version] = SplitRef(ref);
        auto v = s->repo_->Resolve(name, version);
        if (!v.ok()) return InvalidArgument("cascade '" + m + "': '" + ref + "': " + v.status().message());
        if (!v.value()->signature().classification()) {
          return InvalidArgument("cascade '" + m + "': '" + ref + "' is not a classifier");
        }
      }
    }
  }
  if (!options.access_log.empty()) {
    s->log_ = options.access_log == "-" ? stdout : std::fopen(options.access_log.c_str(), "a");
    if (!s->log_) return IoError(options.access_log + ": cannot open the access log");
  }
  if (options.watch_interval_s > 0) s->repo_->StartWatch(options.watch_interval_s);
  return s;
}

InferenceServer::~InferenceServer() {
  if (repo_) repo_->StopWatch();
  if (log_ && log_ != stdout) std::fclose(log_);
}

void InferenceServer::AccessLog(const json& line) {
  if (!log_) return;
  std::string s = line.dump(-1, ' ', false, json::error_handler_t::replace);
  s += '\n';
  std::lock_guard<std::mutex> l(log_mu_);
  std::fwrite(s.data(), 1, s.size(), log_);
  std::fflush(log_);
}

Result<InferResult> InferenceServer::InferOne(const std::shared_ptr<ServedVersion>& v,
                                              const InferRequestMsg& request) {
  auto start = Clock::now();
  auto run = [&]() -> Result<InferResult> {
    ASSIGN_OR_RETURN(at::Tensor batch, v->signature().ToBatch(request));
    ASSIGN_OR_RETURN(int64_t priority, IntParameter(request.parameters, "priority", 0));
    ASSIGN_OR_RETURN(int64_t timeout, IntParameter(request.parameters, "timeout", 0));
    if (priority >= v->batching().priority_levels) {
      return InvalidArgument("parameters.priority: " + std::to_string(priority) + " is outside 0.." +
                             std::to_string(v->batching().priority_levels - 1));
    }
    ASSIGN_OR_RETURN(at::Tensor out, v->Infer(batch, static_cast<int>(priority), timeout));
    InferResult r;
    r.model = v->model();
    r.version = std::to_string(v->version());
    ASSIGN_OR_RETURN(r.outputs, v->signature().FromOutput(out, request.outputs));
    return r;
  };
  auto r = run();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  // Only requests that reached a version count for it; a malformed body is the client's fault
  // and is counted by the front end, not as the model's failure.
  if (r.ok()) {
    v->success.fetch_add(1, std::memory_order_relaxed);
    v->latency.Observe(secs);
  } else if (r.status().code() != StatusCode::kInvalidArgument) {
    v->failure.fetch_add(1, std::memory_order_relaxed);
  }
  return r;
}

Result<InferResult> InferenceServer::Infer(const std::string& model, const std::string& version,
                                           const InferRequestMsg& request) {
  if (draining_.load()) return Unavailable("the server is shutting down");
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  const ModelSettings& s = entry->settings;
  if (s.is_cascade) {
    if (!version.empty()) return InvalidArgument("cascade '" + model + "' has no versions");
    return InferCascade(*entry, request);
  }
  if (s.has_experiment && version.empty()) {
    const ExperimentSettings& e = s.experiment;
    std::string key;
    if (auto k = request.parameters.find(e.sticky_key); k != request.parameters.end()) {
      key = k->is_string() ? k->get<std::string>() : k->dump();
    }
    int i = experiments_->Pick(e, key);
    const std::string& variant = e.variants[static_cast<size_t>(i)];
    auto start = Clock::now();
    auto v = repo_->Resolve(model, variant);
    Result<InferResult> r = v.ok() ? InferOne(v.value(), request) : Result<InferResult>(v.status());
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    bool client_error = !r.ok() && r.status().code() == StatusCode::kInvalidArgument;
    if (!client_error) experiments_->Record(e.name, variant, request.id, secs, r.ok());
    if (r.ok()) {
      r->parameters["experiment"] = e.name;
      r->parameters["variant"] = variant;
    }
    return r;
  }
  ASSIGN_OR_RETURN(auto v, repo_->Resolve(model, version));
  return InferOne(v, request);
}

Result<InferResult> InferenceServer::InferCascade(const ModelEntry& entry, const InferRequestMsg& request) {
  const CascadeSettings& c = entry.settings.cascade;
  auto [light_name, light_version] = SplitRef(c.light);
  auto [full_name, full_version] = SplitRef(c.full);
  ASSIGN_OR_RETURN(auto light, repo_->Resolve(light_name, light_version));
  ASSIGN_OR_RETURN(auto full, repo_->Resolve(full_name, full_version));
  const Signature& ls = light->signature();
  const Signature& fs = full->signature();
  if (ls.input_shape() != fs.input_shape() || ls.classes() != fs.classes() || !ls.classification()) {
    return FailedPrecondition("cascade '" + entry.settings.name + "': '" + c.light + "' and '" + c.full +
                              "' do not take the same inputs or give the same classes");
  }
  ASSIGN_OR_RETURN(at::Tensor batch, ls.ToBatch(request));
  ASSIGN_OR_RETURN(int64_t priority, IntParameter(request.parameters, "priority", 0));
  ASSIGN_OR_RETURN(int64_t timeout, IntParameter(request.parameters, "timeout", 0));
  ASSIGN_OR_RETURN(at::Tensor out, light->Infer(batch, static_cast<int>(std::min<int64_t>(priority, light->batching().priority_levels - 1)), timeout));
  light->success.fetch_add(1, std::memory_order_relaxed);
  at::Tensor conf = ls.Confidence(out);
  at::Tensor low = (conf < c.threshold).nonzero().view({-1});
  int64_t escalated = low.numel();
  bool audit = false;
  if (entry.settings.cascade.audit_fraction > 0) {
    thread_local std::mt19937_64 rng(std::random_device{}());
    audit = std::uniform_real_distribution<double>(0, 1)(rng) < entry.settings.cascade.audit_fraction;
  }
  at::Tensor combined = out.to(at::kFloat).clone();
  std::vector<int64_t> full_classes;
  if (audit) {
    ASSIGN_OR_RETURN(at::Tensor all, full->Infer(batch, static_cast<int>(std::min<int64_t>(priority, full->batching().priority_levels - 1)), timeout));
    full->success.fetch_add(1, std::memory_order_relaxed);
    if (escalated > 0) combined.index_copy_(0, low, all.to(at::kFloat).index_select(0, low));
    at::Tensor fc = fs.task() == "binary" ? (all.select(1, 0) > 0).to(at::kLong) : all.argmax(1);
    full_classes.assign(fc.data_ptr<int64_t>(), fc.data_ptr<int64_t>() + fc.numel());
  } else if (escalated > 0) {
    at::Tensor hard = batch.index_select(0, low).contiguous();
    ASSIGN_OR_RETURN(at::Tensor fo, full->Infer(hard, static_cast<int>(std::min<int64_t>(priority, full->batching().priority_levels - 1)), timeout));
    full->success.fetch_add(1, std::memory_order_relaxed);
    combined.index_copy_(0, low, fo.to(at::kFloat));
  }
  int64_t rows = batch.size(0);
  cascades_->Count(entry.settings.name, rows, escalated, audit ? rows : 0);
  at::Tensor cc = ls.task() == "binary" ? (combined.select(1, 0) > 0).to(at::kLong) : combined.argmax(1);
  cascades_->Remember(entry.settings.name, request.id,
                      std::vector<int64_t>(cc.data_ptr<int64_t>(), cc.data_ptr<int64_t>() + cc.numel()),
                      std::move(full_classes));
  InferResult r;
  r.model = entry.settings.name;
  r.version = "";
  ASSIGN_OR_RETURN(r.outputs, ls.FromOutput(combined, request.outputs));
  std::vector<bool> esc(static_cast<size_t>(rows), false);
  const int64_t* low_rows = low.data_ptr<int64_t>();
  for (int64_t i = 0; i < escalated; ++i) esc[static_cast<size_t>(low_rows[i])] = true;
  r.parameters["escalated_rows"] = escalated;
  r.parameters["escalated"] = esc;
  r.parameters["light"] = light->model() + ":" + std::to_string(light->version());
  r.parameters["full"] = full->model() + ":" + std::to_string(full->version());
  return r;
}

Result<json> InferenceServer::ModelMetadata(const std::string& model, const std::string& version) const {
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  const ModelSettings& s = entry->settings;
  json j = {{"name", model}, {"platform", "ronghe"}};
  if (s.is_cascade) {
    auto [name, ver] = SplitRef(s.cascade.light);
    ASSIGN_OR_RETURN(auto light, repo_->Resolve(name, ver));
    j["versions"] = json::array();
    j["inputs"] = light->signature().InputsJson();
    j["outputs"] = light->signature().OutputsJson();
    j["parameters"] = {{"cascade", {{"light", s.cascade.light}, {"full", s.cascade.full},
                                    {"threshold", s.cascade.threshold}}}};
    return j;
  }
  ASSIGN_OR_RETURN(auto v, repo_->Resolve(model, version));
  json versions = json::array();
  for (const auto& [n, p] : entry->versions) versions.push_back(std::to_string(n));
  j["versions"] = versions;
  j["inputs"] = v->signature().InputsJson();
  j["outputs"] = v->signature().OutputsJson();
  json params = {{"task", v->signature().task()}, {"version", std::to_string(v->version())},
                 {"aliases", s.aliases},
                 {"max_batch_size", v->batching().max_batch_size},
                 {"max_queue_delay_us", v->batching().max_queue_delay_us}};
  if (v->manifest().contains("metrics")) params["metrics"] = v->manifest()["metrics"];
  if (s.has_experiment) {
    params["experiment"] = {{"name", s.experiment.name}, {"variants", s.experiment.variants},
                            {"weights", s.experiment.weights}, {"sticky_key", s.experiment.sticky_key}};
  }
  j["parameters"] = params;
  return j;
}

Status InferenceServer::ModelReady(const std::string& model, const std::string& version) const {
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  if (entry->settings.is_cascade) return Status::OK();
  ASSIGN_OR_RETURN(auto v, repo_->Resolve(model, version));
  (void)v;
  return Status::OK();
}

json InferenceServer::RepositoryIndex() const {
  json out = json::array();
  for (const auto& e : repo_->Index()) {
    if (e.versions.empty()) {
      json j = {{"name", e.name}, {"state", e.state}};
      if (!e.reason.empty()) j["reason"] = e.reason;
      out.push_back(j);
    }
    for (int64_t v : e.versions) {
      out.push_back({{"name", e.name}, {"version", std::to_string(v)}, {"state", e.state}});
    }
  }
  return out;
}

Status InferenceServer::Load(const std::string& model) {
  RETURN_IF_ERROR(repo_->Load(model));
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  if (entry->settings.has_experiment) RETURN_IF_ERROR(experiments_->Register(model, entry->settings.experiment));
  return Status::OK();
}

Status InferenceServer::Unload(const std::string& model) { return repo_->Unload(model); }

Status InferenceServer::Feedback(const std::string& model, const json& body) {
  if (!body.is_object()) return InvalidArgument("feedback body must be a JSON object");
  auto id = body.find("id");
  if (id == body.end() || !id->is_string() || id->get<std::string>().empty()) {
    return InvalidArgument("feedback: 'id' (the request's id) missing");
  }
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  const ModelSettings& s = entry->settings;
  if (s.has_experiment) {
    auto o = body.find("outcome");
    if (o == body.end() || !o->is_number()) return InvalidArgument("feedback: 'outcome' (0 or 1) missing");
    return experiments_->Feedback(s.experiment.name, id->get<std::string>(), o->get<double>());
  }
  if (s.is_cascade) {
    auto [name, ver] = SplitRef(s.cascade.light);
    ASSIGN_OR_RETURN(auto light, repo_->Resolve(name, ver));
    const auto& classes = light->signature().classes();
    auto label_of = [&](const json& x) -> Result<int64_t> {
      if (x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < static_cast<int64_t>(classes.size())) {
        return x.get<int64_t>();
      }
      if (x.is_string()) {
        for (size_t i = 0; i < classes.size(); ++i) {
          if (classes[i] == x.get<std::string>()) return static_cast<int64_t>(i);
        }
      }
      return InvalidArgument("feedback: label " + x.dump().substr(0, 64) + " is not a class index or name");
    };
    std::vector<int64_t> labels;
    if (auto l = body.find("label"); l != body.end()) {
      ASSIGN_OR_RETURN(int64_t x, label_of(*l));
      labels.push_back(x);
    } else if (auto ls = body.find("labels"); ls != body.end() && ls->is_array()) {
      for (const auto& x : *ls) {
        ASSIGN_OR_RETURN(int64_t y, label_of(x));
        labels.push_back(y);
      }
    } else {
      return InvalidArgument("feedback: 'label' or 'labels' (true classes) missing");
    }
    return cascades_->Label(model, id->get<std::string>(), labels);
  }
  return FailedPrecondition("model '" + model + "' has neither an experiment nor a cascade to take feedback");
}

std::string InferenceServer::Metrics() const {
  std::ostringstream o;
  auto family = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  struct Row {
    std::string labels;
    std::shared_ptr<ServedVersion> v;
    BatcherStats b;
  };
  std::vector<Row> rows;
  for (const std::string& m : repo_->LoadedModels()) {
    auto entry = repo_->Entry(m);
    if (!entry.ok()) continue;
    for (const auto& [n, v] : entry.value()->versions) {
      rows.push_back({"model=\"" + Esc(m) + "\",version=\"" + std::to_string(n) + "\"", v, v->BatchStats()});
    }
  }
  family("ronghe_inference_requests_total", "counter", "Requests answered, by outcome.");
  for (const auto& r : rows) {
    o << "ronghe_inference_requests_total{" << r.labels << ",outcome=\"success\"} " << r.v->success.load() << '\n';
    o << "ronghe_inference_requests_total{" << r.labels << ",outcome=\"failure\"} " << r.v->failure.load() << '\n';
  }
  family("ronghe_inference_rejected_total", "counter", "Requests refused because the queue was full.");
  for (const auto& r : rows) o << "ronghe_inference_rejected_total{" << r.labels << "} " << r.b.rejected << '\n';
  family("ronghe_inference_timeouts_total", "counter", "Requests that timed out in the queue.");
  for (const auto& r : rows) o << "ronghe_inference_timeouts_total{" << r.labels << "} " << r.b.timed_out << '\n';
  family("ronghe_inference_queue_seconds_total", "counter", "Seconds requests spent queued, summed.");
  for (const auto& r : rows) o << "ronghe_inference_queue_seconds_total{" << r.labels << "} " << Num(r.b.queue_seconds) << '\n';
  family("ronghe_inference_compute_seconds_total", "counter", "Seconds spent running batches, summed.");
  for (const auto& r : rows) o << "ronghe_inference_compute_seconds_total{" << r.labels << "} " << Num(r.b.compute_seconds) << '\n';
  family("ronghe_inference_queue_size", "gauge", "Requests waiting now.");
  for (const auto& r : rows) o << "ronghe_inference_queue_size{" << r.labels << "} " << r.v->QueueSize() << '\n';
  family("ronghe_inference_batch_size", "histogram", "Rows per executed batch.");
  for (const auto& r : rows) {
    int64_t cum = 0, sum = 0;
    size_t k = 0;
    std::vector<std::pair<int64_t, int64_t>> hist(r.b.batch_rows.begin(), r.b.batch_rows.end());
    for (int64_t le : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
      while (k < hist.size() && hist[k].first <= le) {
        cum += hist[k].second;
        sum += hist[k].first * hist[k].second;
        ++k;
      }
      o << "ronghe_inference_batch_size_bucket{" << r.labels << ",le=\"" << le << "\"} " << cum << '\n';
    }
    for (; k < hist.size(); ++k) {
      cum += hist[k].second;
      sum += hist[k].first * hist[k].second;
    }
    o << "ronghe_inference_batch_size_bucket{" << r.labels << ",le=\"+Inf\"} " << cum << '\n';
    o << "ronghe_inference_batch_size_sum{" << r.labels << "} " << sum << '\n';
    o << "ronghe_inference_batch_size_count{" << r.labels << "} " << cum << '\n';
  }
  family("ronghe_inference_request_duration_seconds", "histogram", "Request latency inside the server.");
  for (const auto& r : rows) {
    auto counts = r.v->latency.Counts();
    const auto& bounds = Histogram::Bounds();
    for (size_t i = 0; i < bounds.size(); ++i) {
      o << "ronghe_inference_request_duration_seconds_bucket{" << r.labels << ",le=\"" << Num(bounds[i]) << "\"} " << counts[i] << '\n';
    }
    o << "ronghe_inference_request_duration_seconds_bucket{" << r.labels << ",le=\"+Inf\"} " << counts.back() << '\n';
    o << "ronghe_inference_request_duration_seconds_sum{" << r.labels << "} " << Num(r.v->latency.Sum()) << '\n';
    o << "ronghe_inference_request_duration_seconds_count{" << r.labels << "} " << counts.back() << '\n';
  }
  family("ronghe_model_reloads_total", "counter", "Model reloads that replaced a serving entry.");
  o << "ronghe_model_reloads_total " << repo_->reloads() << '\n';
  family("ronghe_experiment_requests_total", "counter", "Requests per experiment variant, by outcome.");
  for (const auto& [e, vars] : experiments_->Counters()) {
    for (const auto& [v, c] : vars) {
      std::string l = "experiment=\"" + Esc(e) + "\",variant=\"" + Esc(v) + "\"";
      o << "ronghe_experiment_requests_total{" << l << ",outcome=\"success\"} " << c.first - c.second << '\n';
      o << "ronghe_experiment_requests_total{" << l << ",outcome=\"failure\"} " << c.second << '\n';
    }
  }
  auto routes = cascades_->Snapshot();
  family("ronghe_cascade_rows_total", "counter", "Rows answered by a cascade route.");
  for (const auto& [n, r] : routes) o << "ronghe_cascade_rows_total{route=\"" << Esc(n) << "\"} " << r.rows << '\n';
  family("ronghe_cascade_escalated_rows_total", "counter", "Rows the light model passed to the full model.");
  for (const auto& [n, r] : routes) o << "ronghe_cascade_escalated_rows_total{route=\"" << Esc(n) << "\"} " << r.escalated << '\n';
  family("ronghe_cascade_escalation_ratio", "gauge", "Share of rows escalated so far.");
  for (const auto& [n, r] : routes) {
    o << "ronghe_cascade_escalation_ratio{route=\"" << Esc(n) << "\"} " << Num(r.rows ? double(r.escalated) / double(r.rows) : 0) << '\n';
  }
  family("ronghe_cascade_accuracy", "gauge", "Accuracy on rows with feedback labels: the cascade on all, and cascade vs full-only on audited rows.");
  for (const auto& [n, r] : routes) {
    std::string l = "route=\"" + Esc(n) + "\"";
    o << "ronghe_cascade_accuracy{" << l << ",of=\"cascade\",rows=\"labeled\"} " << Num(r.labeled ? double(r.correct) / double(r.labeled) : 0) << '\n';
    o << "ronghe_cascade_accuracy{" << l << ",of=\"cascade\",rows=\"audited\"} " << Num(r.audit_labeled ? double(r.audit_cascade_correct) / double(r.audit_labeled) : 0) << '\n';
    o << "ronghe_cascade_accuracy{" << l << ",of=\"full\",rows=\"audited\"} " << Num(r.audit_labeled ? double(r.audit_full_correct) / double(r.audit_labeled) : 0) << '\n';
  }
  family("ronghe_cascade_labeled_rows_total", "counter", "Rows with feedback labels (all, audited).");
  for (const auto& [n, r] : routes) {
    o << "ronghe_cascade_labeled_rows_total{route=\"" << Esc(n) << "\",rows=\"labeled\"} " << r.labeled << '\n';
    o << "ronghe_cascade_labeled_rows_total{route=\"" << Esc(n) << "\",rows=\"audited\"} " << r.audit_labeled << '\n';
  }
  return o.str();
}

}  // namespace ronghe::serve
