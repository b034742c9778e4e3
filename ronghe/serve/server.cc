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

}  // namespace

int HttpStatusOf(const Status& st) {
  switch (st.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kFailedPrecondition:
      return 409;
    default:
      return 500;
  }
}

Result<std::unique_ptr<InferenceServer>> InferenceServer::Create(const ServerOptions& options) {
  std::unique_ptr<InferenceServer> s(new InferenceServer());
  s->options_ = options;
  ASSIGN_OR_RETURN(s->repo_, ModelRepository::Open(options.repository));
  ASSIGN_OR_RETURN(s->experiments_, Experiments::Open(options.store_path));
  s->cascades_ = std::make_unique<CascadeStats>();
  s->version_route_ = std::make_unique<VersionRoute>(s->repo_.get());
  s->experiment_route_ = std::make_unique<ExperimentRoute>(s->repo_.get(), s->experiments_.get());
  s->cascade_route_ = std::make_unique<CascadeRoute>(s->repo_.get(), s->cascades_.get());
  for (const std::string& m : s->repo_->LoadedModels()) {
    ASSIGN_OR_RETURN(auto entry, s->repo_->Entry(m));
    if (entry->settings.has_experiment) {
      RETURN_IF_ERROR(s->experiments_->Register(m, entry->settings.experiment));
    }
    if (entry->settings.is_cascade) {
      for (const auto& ref : {entry->settings.cascade.light, entry->settings.cascade.full}) {
        auto [name, version] = SplitModelRef(ref);
        auto v = s->repo_->Resolve(name, version);
        if (!v.ok())
          return InvalidArgument("cascade '" + m + "': '" + ref + "': " + v.status().message());
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
  MutexLock l(&log_mu_);
  std::fwrite(s.data(), 1, s.size(), log_);
  std::fflush(log_);
}

const Route& InferenceServer::RouteFor(const ModelEntry& entry) const {
  if (entry.settings.is_cascade) return *cascade_route_;
  if (entry.settings.has_experiment) return *experiment_route_;
  return *version_route_;
}

Result<InferResult> InferenceServer::Infer(const std::string& model, const std::string& version,
                                           const InferRequestMsg& request) {
  if (draining_.load()) return Unavailable("the server is shutting down");
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  return RouteFor(*entry).Infer(*entry, version, request);
}

void InferenceServer::BeginInfer(const std::string& model, const std::string& version,
                                 const InferRequestMsg& request, PendingInfer* p) {
  p->route = nullptr;
  p->queued = false;
  if (draining_.load()) {
    p->result = Unavailable("the server is shutting down");
    return;
  }
  auto entry = repo_->Entry(model);
  if (!entry.ok()) {
    p->result = entry.status();
    return;
  }
  const Route& route = RouteFor(**entry);
  route.Begin(std::move(entry).value(), version, request, p);
}

Result<InferResult> InferenceServer::FinishInfer(PendingInfer* p) {
  if (p->route == nullptr) return std::move(p->result);
  return p->route->Finish(p);
}

Result<json> InferenceServer::ModelMetadata(const std::string& model,
                                            const std::string& version) const {
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  const ModelSettings& s = entry->settings;
  json j = {{"name", model}, {"platform", "ronghe"}};
  if (s.is_cascade) {
    auto [name, ver] = SplitModelRef(s.cascade.light);
    ASSIGN_OR_RETURN(auto light, repo_->Resolve(name, ver));
    j["versions"] = json::array();
    j["inputs"] = light->signature().InputsJson();
    j["outputs"] = light->signature().OutputsJson();
    j["parameters"] = {{"cascade",
                        {{"light", s.cascade.light},
                         {"full", s.cascade.full},
                         {"threshold", s.cascade.threshold}}}};
    return j;
  }
  ASSIGN_OR_RETURN(auto v, repo_->Resolve(model, version));
  json versions = json::array();
  for (const auto& [n, p] : entry->versions) versions.push_back(std::to_string(n));
  j["versions"] = versions;
  j["inputs"] = v->signature().InputsJson();
  j["outputs"] = v->signature().OutputsJson();
  json params = {{"task", v->signature().task()},
                 {"version", std::to_string(v->version())},
                 {"aliases", s.aliases},
                 {"max_batch_size", v->batching().max_batch_size},
                 {"max_queue_delay_us", v->batching().max_queue_delay_us},
                 {"dispatch", DispatchPolicyName(v->batching().dispatch)},
                 {"instances", v->batching().instances}};
  if (v->manifest().contains("metrics")) params["metrics"] = v->manifest()["metrics"];
  if (s.has_experiment) {
    params["experiment"] = {{"name", s.experiment.name},
                            {"variants", s.experiment.variants},
                            {"weights", s.experiment.weights},
                            {"sticky_key", s.experiment.sticky_key}};
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
      json j = {{"name", e.name}, {"version", std::to_string(v)}, {"state", e.state}};
      if (!e.reason.empty()) j["reason"] = e.reason;
      out.push_back(j);
    }
  }
  return out;
}

Status InferenceServer::Load(const std::string& model) {
  RETURN_IF_ERROR(repo_->Load(model));
  ASSIGN_OR_RETURN(auto entry, repo_->Entry(model));
  if (entry->settings.has_experiment)
    RETURN_IF_ERROR(experiments_->Register(model, entry->settings.experiment));
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
    if (o == body.end() || !o->is_number())
      return InvalidArgument("feedback: 'outcome' (0 or 1) missing");
    return experiments_->Feedback(s.experiment.name, id->get<std::string>(), o->get<double>());
  }
  if (s.is_cascade) {
    auto [name, ver] = SplitModelRef(s.cascade.light);
    ASSIGN_OR_RETURN(auto light, repo_->Resolve(name, ver));
    const auto& classes = light->signature().classes();
    auto label_of = [&](const json& x) -> Result<int64_t> {
      if (x.is_number_integer() && x.get<int64_t>() >= 0 &&
          x.get<int64_t>() < static_cast<int64_t>(classes.size())) {
        return x.get<int64_t>();
      }
      if (x.is_string()) {
        for (size_t i = 0; i < classes.size(); ++i) {
          if (classes[i] == x.get<std::string>()) return static_cast<int64_t>(i);
        }
      }
      return InvalidArgument("feedback: label " + x.dump().substr(0, 64) +
                             " is not a class index or name");
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
  return FailedPrecondition("model '" + model +
                            "' has neither an experiment nor a cascade to take feedback");
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
      rows.push_back(
          {"model=\"" + Esc(m) + "\",version=\"" + std::to_string(n) + "\"", v, v->BatchStats()});
    }
  }
  family("ronghe_inference_requests_total", "counter", "Requests answered, by outcome.");
  for (const auto& r : rows) {
    o << "ronghe_inference_requests_total{" << r.labels << ",outcome=\"success\"} "
      << r.v->success.load() << '\n';
    o << "ronghe_inference_requests_total{" << r.labels << ",outcome=\"failure\"} "
      << r.v->failure.load() << '\n';
  }
  family("ronghe_inference_rejected_total", "counter",
         "Requests refused because the queue was full.");
  for (const auto& r : rows)
    o << "ronghe_inference_rejected_total{" << r.labels << "} " << r.b.rejected << '\n';
  family("ronghe_inference_timeouts_total", "counter", "Requests that timed out in the queue.");
  for (const auto& r : rows)
    o << "ronghe_inference_timeouts_total{" << r.labels << "} " << r.b.timed_out << '\n';
  family("ronghe_inference_queue_seconds_total", "counter",
         "Seconds requests spent queued, summed.");
  for (const auto& r : rows)
    o << "ronghe_inference_queue_seconds_total{" << r.labels << "} " << Num(r.b.queue_seconds)
      << '\n';
  family("ronghe_inference_compute_seconds_total", "counter",
         "Seconds spent running batches, summed.");
  for (const auto& r : rows)
    o << "ronghe_inference_compute_seconds_total{" << r.labels << "} " << Num(r.b.compute_seconds)
      << '\n';
  family("ronghe_inference_batches_total", "counter",
         "Batches run, by why they ran: full (max or preferred size), idle (an idle instance, "
         "work-conserving dispatch), delay (the oldest request's delay ran out), drain.");
  for (const auto& r : rows) {
    for (const auto& [reason, n] : {std::pair<const char*, int64_t>{"full", r.b.batches_full},
                                    {"idle", r.b.batches_idle},
                                    {"delay", r.b.batches_delay},
                                    {"drain", r.b.batches_drain}}) {
      o << "ronghe_inference_batches_total{" << r.labels << ",reason=\"" << reason << "\"} " << n
        << '\n';
    }
  }
  family("ronghe_inference_queue_size", "gauge", "Requests waiting now.");
  for (const auto& r : rows)
    o << "ronghe_inference_queue_size{" << r.labels << "} " << r.v->QueueSize() << '\n';
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
      o << "ronghe_inference_batch_size_bucket{" << r.labels << ",le=\"" << le << "\"} " << cum
        << '\n';
    }
    for (; k < hist.size(); ++k) {
      cum += hist[k].second;
      sum += hist[k].first * hist[k].second;
    }
    o << "ronghe_inference_batch_size_bucket{" << r.labels << ",le=\"+Inf\"} " << cum << '\n';
    o << "ronghe_inference_batch_size_sum{" << r.labels << "} " << sum << '\n';
    o << "ronghe_inference_batch_size_count{" << r.labels << "} " << cum << '\n';
  }
  family("ronghe_inference_request_duration_seconds", "histogram",
         "Request latency inside the server.");
  for (const auto& r : rows) {
    auto counts = r.v->latency.Counts();
    const auto& bounds = Histogram::Bounds();
    for (size_t i = 0; i < bounds.size(); ++i) {
      o << "ronghe_inference_request_duration_seconds_bucket{" << r.labels << ",le=\""
        << Num(bounds[i]) << "\"} " << counts[i] << '\n';
    }
    o << "ronghe_inference_request_duration_seconds_bucket{" << r.labels << ",le=\"+Inf\"} "
      << counts.back() << '\n';
    o << "ronghe_inference_request_duration_seconds_sum{" << r.labels << "} "
      << Num(r.v->latency.Sum()) << '\n';
    o << "ronghe_inference_request_duration_seconds_count{" << r.labels << "} " << counts.back()
      << '\n';
  }
  family("ronghe_model_reloads_total", "counter", "Model reloads that replaced a serving entry.");
  o << "ronghe_model_reloads_total " << repo_->reloads() << '\n';
  family("ronghe_model_load_failures_total", "counter",
         "Model loads (explicit or by --watch) that failed; the previous entry kept serving.");
  o << "ronghe_model_load_failures_total " << repo_->load_failures() << '\n';
  family("ronghe_experiment_requests_total", "counter",
         "Requests per experiment variant, by outcome.");
  for (const auto& [e, vars] : experiments_->Counters()) {
    for (const auto& [v, c] : vars) {
      std::string l = "experiment=\"" + Esc(e) + "\",variant=\"" + Esc(v) + "\"";
      o << "ronghe_experiment_requests_total{" << l << ",outcome=\"success\"} "
        << c.first - c.second << '\n';
      o << "ronghe_experiment_requests_total{" << l << ",outcome=\"failure\"} " << c.second << '\n';
    }
  }
  auto routes = cascades_->Snapshot();
  family("ronghe_cascade_rows_total", "counter", "Rows answered by a cascade route.");
  for (const auto& [n, r] : routes)
    o << "ronghe_cascade_rows_total{route=\"" << Esc(n) << "\"} " << r.rows << '\n';
  family("ronghe_cascade_escalated_rows_total", "counter",
         "Rows the light model passed to the full model.");
  for (const auto& [n, r] : routes)
    o << "ronghe_cascade_escalated_rows_total{route=\"" << Esc(n) << "\"} " << r.escalated << '\n';
  family("ronghe_cascade_escalation_ratio", "gauge", "Share of rows escalated so far.");
  for (const auto& [n, r] : routes) {
    o << "ronghe_cascade_escalation_ratio{route=\"" << Esc(n) << "\"} "
      << Num(r.rows ? double(r.escalated) / double(r.rows) : 0) << '\n';
  }
  family("ronghe_cascade_accuracy", "gauge",
         "Accuracy on rows with feedback labels: the cascade on all, and cascade vs full-only on "
         "audited rows.");
  for (const auto& [n, r] : routes) {
    std::string l = "route=\"" + Esc(n) + "\"";
    o << "ronghe_cascade_accuracy{" << l << ",of=\"cascade\",rows=\"labeled\"} "
      << Num(r.labeled ? double(r.correct) / double(r.labeled) : 0) << '\n';
    o << "ronghe_cascade_accuracy{" << l << ",of=\"cascade\",rows=\"audited\"} "
      << Num(r.audit_labeled ? double(r.audit_cascade_correct) / double(r.audit_labeled) : 0)
      << '\n';
    o << "ronghe_cascade_accuracy{" << l << ",of=\"full\",rows=\"audited\"} "
      << Num(r.audit_labeled ? double(r.audit_full_correct) / double(r.audit_labeled) : 0) << '\n';
  }
  family("ronghe_cascade_labeled_rows_total", "counter",
         "Rows with feedback labels (all, audited).");
  for (const auto& [n, r] : routes) {
    o << "ronghe_cascade_labeled_rows_total{route=\"" << Esc(n) << "\",rows=\"labeled\"} "
      << r.labeled << '\n';
    o << "ronghe_cascade_labeled_rows_total{route=\"" << Esc(n) << "\",rows=\"audited\"} "
      << r.audit_labeled << '\n';
  }
  return o.str();
}

}  // namespace ronghe::serve
