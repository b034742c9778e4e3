#include "ronghe/serve/route.h"

#include <ATen/ATen.h>

#include <chrono>
#include <random>

#include "ronghe/serve/experiment.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Result<int64_t> IntParameter(const json& params, const char* name, int64_t dflt) {
  auto it = params.find(name);
  if (it == params.end()) return dflt;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return InvalidArgument(std::string("parameters.") + name + ": must be a non-negative integer");
  }
  return it->get<int64_t>();
}

// Only requests that reached a version count for it; a malformed body is the client's fault and
// is counted by the front end, not as the model's failure.
void Record(ServedVersion& v, double seconds, const Status& st) {
  if (st.ok()) {
    v.success.fetch_add(1, std::memory_order_relaxed);
    v.latency.Observe(seconds);
  } else if (st.code() != StatusCode::kInvalidArgument) {
    v.failure.fetch_add(1, std::memory_order_relaxed);
  }
}

std::vector<int64_t> Classes(const Signature& s, const at::Tensor& out) {
  at::Tensor c = s.task() == "binary" ? (out.select(1, 0) > 0).to(at::kLong) : out.argmax(1);
  c = c.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

std::pair<std::string, std::string> SplitModelRef(const std::string& ref) {
  auto colon = ref.find(':');
  if (colon == std::string::npos) return {ref, ""};
  return {ref.substr(0, colon), ref.substr(colon + 1)};
}

Result<RequestOptions> ParseRequestOptions(const InferRequestMsg& request, const ServedVersion& v) {
  ASSIGN_OR_RETURN(int64_t priority, IntParameter(request.parameters, "priority", 0));
  ASSIGN_OR_RETURN(int64_t timeout, IntParameter(request.parameters, "timeout", 0));
  if (priority >= v.batching().priority_levels) {
    return InvalidArgument(
        "parameters.priority: " + std::to_string(priority) + " is outside 0.." +
        std::to_string(v.batching().priority_levels - 1) +
        (v.model().empty() ? "" : " of " + v.model() + ":" + std::to_string(v.version())));
  }
  return RequestOptions{static_cast<int>(priority), timeout};
}

Result<at::Tensor> RunVersion(ServedVersion& v, const at::Tensor& batch, const RequestOptions& o) {
  const auto start = Clock::now();
  auto r = v.Infer(batch, o.priority, o.timeout_us);
  Record(v, Since(start), r.status());
  return r;
}

void BeginOnVersion(std::shared_ptr<ServedVersion> v, const InferRequestMsg& request,
                    PendingInfer* p) {
  p->start = Clock::now();
  p->request = &request;
  p->queued = false;
  auto prepare = [&]() -> Status {
    ASSIGN_OR_RETURN(InferRequest in, v->signature().Prepare(request, &p->scratch));
    ASSIGN_OR_RETURN(RequestOptions o, ParseRequestOptions(request, *v));
    in.priority = o.priority;
    in.timeout_us = o.timeout_us;
    in.output = &p->output;
    v->Submit(in, &p->ticket);
    return Status::OK();
  };
  Status st = prepare();
  if (!st.ok()) {
    Record(*v, Since(p->start), st);
    p->result = st;
    return;
  }
  p->version = std::move(v);
  p->queued = true;
}

Result<InferResult> FinishOnVersion(PendingInfer* p) {
  ServedVersion& v = *p->version;
  auto finish = [&]() -> Result<InferResult> {
    int64_t width = 0;
    RETURN_IF_ERROR(v.Await(&p->ticket, &width));
    InferResult r;
    r.model = v.model();
    r.version = std::to_string(v.version());
    const int64_t rows = width > 0 ? static_cast<int64_t>(p->output.size()) / width : 0;
    ASSIGN_OR_RETURN(r.outputs,
                     v.signature().FromOutput(p->output.data(), rows, width, p->request->outputs));
    return r;
  };
  auto r = finish();
  Record(v, Since(p->start), r.status());
  p->queued = false;
  p->version.reset();  // a reloaded model's old version is not kept alive by an idle slot
  return r;
}

Result<InferResult> InferOnVersion(std::shared_ptr<ServedVersion> v,
                                   const InferRequestMsg& request) {
  // Per calling thread: the rows, the model's output and the ticket keep their buffers from
  // request to request.
  thread_local PendingInfer p;
  BeginOnVersion(std::move(v), request, &p);
  if (!p.queued) return std::move(p.result);
  return FinishOnVersion(&p);
}

void Route::Begin(std::shared_ptr<const ModelEntry> entry, const std::string& version,
                  const InferRequestMsg& request, PendingInfer* p) const {
  p->route = this;
  p->request = &request;
  p->queued = false;
  p->result = Infer(*entry, version, request);
}

Result<InferResult> Route::Finish(PendingInfer* p) const {
  if (!p->queued) return std::move(p->result);
  return FinishOnVersion(p);
}

void VersionRoute::Begin(std::shared_ptr<const ModelEntry> entry, const std::string& version,
                         const InferRequestMsg& request, PendingInfer* p) const {
  p->route = this;
  p->request = &request;
  p->queued = false;
  auto v = repo_->Resolve(entry->settings.name, version);
  if (!v.ok()) {
    p->result = v.status();
    return;
  }
  BeginOnVersion(std::move(v).value(), request, p);
}

void ExperimentRoute::Begin(std::shared_ptr<const ModelEntry> entry, const std::string& version,
                            const InferRequestMsg& request, PendingInfer* p) const {
  p->route = this;
  p->request = &request;
  p->queued = false;
  p->variant = nullptr;
  p->start = Clock::now();
  if (!version.empty()) {  // an explicit version: outside the experiment
    auto v = repo_->Resolve(entry->settings.name, version);
    if (!v.ok()) {
      p->result = v.status();
      return;
    }
    return BeginOnVersion(std::move(v).value(), request, p);
  }
  const ExperimentSettings& e = entry->settings.experiment;
  std::string key;
  if (auto k = request.parameters.find(e.sticky_key); k != request.parameters.end()) {
    key = k->is_string() ? k->get<std::string>() : k->dump();
  }
  p->variant = &e.variants[static_cast<size_t>(experiments_->Pick(e, key))];
  p->entry = std::move(entry);
  auto v = repo_->Resolve(p->entry->settings.name, *p->variant);
  if (!v.ok()) {
    p->result = v.status();
    return;
  }
  BeginOnVersion(std::move(v).value(), request, p);
}

Result<InferResult> ExperimentRoute::Finish(PendingInfer* p) const {
  const auto start = p->start;
  Result<InferResult> r = p->queued ? FinishOnVersion(p) : std::move(p->result);
  if (p->variant == nullptr) return r;  // an explicit version: outside the experiment
  const ExperimentSettings& e = p->entry->settings.experiment;
  if (r.ok() || r.status().code() != StatusCode::kInvalidArgument) {
    experiments_->Record(e.name, *p->variant, p->request->id, Since(start), r.ok());
  }
  if (r.ok()) {
    r->parameters["experiment"] = e.name;
    r->parameters["variant"] = *p->variant;
  }
  p->entry.reset();
  return r;
}

Result<InferResult> VersionRoute::Infer(const ModelEntry& entry, const std::string& version,
                                        const InferRequestMsg& request) const {
  ASSIGN_OR_RETURN(auto v, repo_->Resolve(entry.settings.name, version));
  return InferOnVersion(std::move(v), request);
}

Result<InferResult> ExperimentRoute::Infer(const ModelEntry& entry, const std::string& version,
                                           const InferRequestMsg& request) const {
  if (!version.empty()) return VersionRoute(repo_).Infer(entry, version, request);
  const ExperimentSettings& e = entry.settings.experiment;
  std::string key;
  if (auto k = request.parameters.find(e.sticky_key); k != request.parameters.end()) {
    key = k->is_string() ? k->get<std::string>() : k->dump();
  }
  const std::string& variant = e.variants[static_cast<size_t>(experiments_->Pick(e, key))];
  const auto start = Clock::now();
  auto v = repo_->Resolve(entry.settings.name, variant);
  Result<InferResult> r =
      v.ok() ? InferOnVersion(std::move(v).value(), request) : Result<InferResult>(v.status());
  if (r.ok() || r.status().code() != StatusCode::kInvalidArgument) {
    experiments_->Record(e.name, variant, request.id, Since(start), r.ok());
  }
  if (r.ok()) {
    r->parameters["experiment"] = e.name;
    r->parameters["variant"] = variant;
  }
  return r;
}

Result<InferResult> CascadeRoute::Infer(const ModelEntry& entry, const std::string& version,
                                        const InferRequestMsg& request) const {
  const std::string& name = entry.settings.name;
  if (!version.empty()) return InvalidArgument("cascade '" + name + "' has no versions");
  const CascadeSettings& c = entry.settings.cascade;
  auto [light_name, light_version] = SplitModelRef(c.light);
  auto [full_name, full_version] = SplitModelRef(c.full);
  ASSIGN_OR_RETURN(auto light, repo_->Resolve(light_name, light_version));
  ASSIGN_OR_RETURN(auto full, repo_->Resolve(full_name, full_version));
  const Signature& ls = light->signature();
  const Signature& fs = full->signature();
  if (ls.input_shape() != fs.input_shape() || ls.classes() != fs.classes() ||
      !ls.classification()) {
    return FailedPrecondition("cascade '" + name + "': '" + c.light + "' and '" + c.full +
                              "' do not take the same inputs or give the same classes");
  }
  ASSIGN_OR_RETURN(at::Tensor batch, ls.ToBatch(request));
  // Both models may run the request: its priority must be valid on each.
  ASSIGN_OR_RETURN(RequestOptions light_options, ParseRequestOptions(request, *light));
  ASSIGN_OR_RETURN(RequestOptions full_options, ParseRequestOptions(request, *full));
  ASSIGN_OR_RETURN(at::Tensor out, RunVersion(*light, batch, light_options));
  at::Tensor low = (ls.Confidence(out) < c.threshold).nonzero().view({-1});
  const int64_t escalated = low.numel();
  bool audit = false;
  if (c.audit_fraction > 0) {
    thread_local std::mt19937_64 rng(std::random_device{}());
    audit = std::uniform_real_distribution<double>(0, 1)(rng) < c.audit_fraction;
  }
  at::Tensor combined = out.to(at::kFloat).clone();
  std::vector<int64_t> full_classes;
  if (audit) {
    ASSIGN_OR_RETURN(at::Tensor all, RunVersion(*full, batch, full_options));
    if (escalated > 0) combined.index_copy_(0, low, all.to(at::kFloat).index_select(0, low));
    full_classes = Classes(fs, all);
  } else if (escalated > 0) {
    ASSIGN_OR_RETURN(at::Tensor fo,
                     RunVersion(*full, batch.index_select(0, low).contiguous(), full_options));
    combined.index_copy_(0, low, fo.to(at::kFloat));
  }
  const int64_t rows = batch.size(0);
  stats_->Count(name, rows, escalated, audit ? rows : 0);
  stats_->Remember(name, request.id, Classes(ls, combined), std::move(full_classes));
  InferResult r;
  r.model = name;
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

void CascadeStats::Count(const std::string& route, int64_t rows, int64_t escalated,
                         int64_t audited) {
  MutexLock l(&mu_);
  Route& r = routes_[route];
  ++r.requests;
  r.rows += rows;
  r.escalated += escalated;
  r.audited_rows += audited;
}

void CascadeStats::Remember(const std::string& route, const std::string& id,
                            std::vector<int64_t> cascade, std::vector<int64_t> full) {
  if (id.empty()) return;
  MutexLock l(&mu_);
  std::string k = route + '\0' + id;
  if (!kept_.count(k)) order_.push_back(k);
  kept_[k] = {std::move(cascade), std::move(full)};
  while (order_.size() > kKeep) {
    kept_.erase(order_.front());
    order_.pop_front();
  }
}

Status CascadeStats::Label(const std::string& route, const std::string& id,
                           const std::vector<int64_t>& labels) {
  MutexLock l(&mu_);
  auto it = kept_.find(route + '\0' + id);
  if (it == kept_.end()) {
    return NotFound("cascade '" + route + "' has no recent request with id '" + id.substr(0, 128) +
                    "'");
  }
  const auto& [cascade, full] = it->second;
  if (labels.size() != cascade.size()) {
    return InvalidArgument("request '" + id.substr(0, 128) + "' had " +
                           std::to_string(cascade.size()) + " rows, feedback gives " +
                           std::to_string(labels.size()) + " labels");
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

std::map<std::string, CascadeStats::Route> CascadeStats::Snapshot() const {
  MutexLock l(&mu_);
  return routes_;
}

}  // namespace ronghe::serve
