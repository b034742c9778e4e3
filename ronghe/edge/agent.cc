#include "ronghe/edge/agent.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>

#include "ronghe/base/file.h"
#include "ronghe/hub/client.h"

namespace ronghe::edge {
namespace {

namespace fs = std::filesystem;

std::string Now() {
  char buf[32];
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Absolute percentage error of one forecast (the first output) against the actual value.
double Ape(float forecast, float actual) {
  return actual == 0 ? 0.0 : 100.0 * std::fabs((forecast - actual) / actual);
}

}  // namespace

Agent::~Agent() = default;

Result<std::unique_ptr<Agent>> Agent::Open(const AgentOptions& o, Node* node) {
  for (const auto& [value, flag] :
       {std::pair{&o.hub, "--hub"}, std::pair{&o.model, "--model"}, std::pair{&o.node, "--node"},
        std::pair{&o.state_dir, "--state"}}) {
    if (value->empty()) return InvalidArgument(std::string("the agent needs ") + flag);
  }
  std::unique_ptr<Agent> a(new Agent());
  a->o_ = o;
  a->node_ = node;
  RETURN_IF_ERROR(MakeDirs(o.state_dir + "/versions"));
  ::chmod(o.state_dir.c_str(), 0700);
  hub::ClientOptions co;
  co.hub = o.hub;
  co.ca_file = o.ca_file;
  co.trust_dir = o.state_dir + "/trust";
  co.trusted_root = o.trusted_root;
  ASSIGN_OR_RETURN(a->client_, hub::HubClient::Open(co));
  MutexLock l(&a->mu_);
  const std::string state = o.state_dir + "/state.json";
  if (FileExists(state)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(state));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return DataLoss(state + ": not a JSON object");
    a->refused_ = j.value("refused", std::vector<std::string>{});
    auto load = [&](const char* key, Loaded* into) -> ronghe::Status {
      if (!j.contains(key) || !j[key].is_object()) return NotFound(std::string("no ") + key);
      into->version = j[key].value("version", "");
      into->file = j[key].value("file", "");
      ASSIGN_OR_RETURN(auto m, Model::Load(o.state_dir + "/versions/" + into->file));
      into->model = std::move(m);
      return ronghe::Status::OK();
    };
    ronghe::Status cur = load("current", &a->current_);
    ronghe::Status prev = load("previous", &a->previous_);
    if (!cur.ok() && prev.ok()) {
      // The running file is gone or damaged (a kill mid-write cannot cause this: files are
      // written before state.json names them): the previous version runs.
      a->Event("restored-previous", a->previous_.version, cur.message());
      a->current_ = a->previous_;
      a->previous_ = {};
    } else if (!cur.ok() && j.contains("current")) {
      return DataLoss(state +
                      ": neither the running nor the previous version loads: " + cur.message());
    }
  }
  if (a->current_.model) {
    node->Set(a->current_.model, a->current_.version);
    a->Event("started", a->current_.version, "restored from " + state);
  }
  return a;
}

ronghe::Status Agent::SaveState() const {
  nlohmann::json j = {{"model", o_.model}, {"node", o_.node}, {"refused", refused_}};
  if (current_.model) j["current"] = {{"version", current_.version}, {"file", current_.file}};
  if (previous_.model) j["previous"] = {{"version", previous_.version}, {"file", previous_.file}};
  return WriteFileAtomic(o_.state_dir + "/state.json", j.dump(2) + "\n");
}

void Agent::Event(const std::string& kind, const std::string& version, const std::string& detail) {
  events_.push_back({{"node", o_.node},
                     {"model", o_.model},
                     {"time", Now()},
                     {"kind", kind},
                     {"version", version},
                     {"detail", detail}});
  while (static_cast<int64_t>(events_.size()) > o_.max_events) {
    events_.pop_front();
    ++dropped_;
  }
}

std::vector<nlohmann::json> Agent::TakeEvents(int64_t* dropped) {
  MutexLock l(&mu_);
  std::vector<nlohmann::json> out(events_.begin(), events_.end());
  events_.clear();
  if (dropped) *dropped = dropped_;
  dropped_ = 0;
  return out;
}

void Agent::ReturnEvents(std::vector<nlohmann::json> events) {
  MutexLock l(&mu_);
  events_.insert(events_.begin(), events.begin(), events.end());
  while (static_cast<int64_t>(events_.size()) > o_.max_events) {
    events_.pop_front();
    ++dropped_;
  }
}

bool Agent::Backtest(const Model& m, int64_t windows, double* mape, double* p99_us,
                     int64_t* counted) const {
  const int64_t steps = m.steps(), f = m.features();
  const auto h = static_cast<int64_t>(history_.size());
  std::vector<float> x(static_cast<size_t>(steps * f));
  std::vector<float> out(static_cast<size_t>(m.outputs()));
  std::vector<double> us;
  double sum = 0;
  int64_t n = 0;
  bool finite = true;
  // Windows ending just before a known next value, newest first.
  for (int64_t end = h - 1; end >= steps && n < windows; --end) {
    for (int64_t t = 0; t < steps; ++t) {
      const std::vector<float>& row = history_[static_cast<size_t>(end - steps + t)];
      if (static_cast<int64_t>(row.size()) != f) return false;
      std::copy(row.begin(), row.end(), x.begin() + t * f);
    }
    auto t0 = std::chrono::steady_clock::now();
    if (!m.Predict(x.data(), steps * f, out.data()).ok()) return false;
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    for (float v : out) finite &= std::isfinite(v);
    sum += Ape(out[0], history_[static_cast<size_t>(end)][0]);
    ++n;
  }
  std::sort(us.begin(), us.end());
  *p99_us = us.empty() ? 0 : us[std::min(us.size() - 1, static_cast<size_t>(0.99 * us.size()))];
  *mape = n ? sum / static_cast<double>(n) : 0;
  *counted = n;
  return finite;
}

void Agent::Switch(Loaded next) {
  previous_ = std::move(current_);
  current_ = std::move(next);
  node_->Set(current_.model, current_.version);
  watch_left_ = previous_.model ? o_.watch : 0;
  watch_err_ = watch_err_prev_ = 0;
  watch_n_ = 0;
  pending_.clear();
  pending_prev_.clear();
  recent_ape_.clear();
}

void Agent::RollBack(const std::string& why) {
  const std::string bad = current_.version;
  refused_.push_back(bad);
  current_ = std::move(previous_);
  previous_ = {};
  node_->Set(current_.model, current_.version);
  watch_left_ = 0;
  pending_.clear();
  pending_prev_.clear();
  ronghe::Status st = SaveState();
  Event("rolled-back", bad,
        why + "; running " + current_.version +
            (st.ok() ? "" : " (state not saved: " + st.message() + ")"));
}

ronghe::Status Agent::CheckForUpdate() {
  RETURN_IF_ERROR(client_->Update().WithContext("hub " + o_.hub));
  auto found = client_->Find(o_.model, "");
  if (!found.ok()) return found.status().WithContext("hub " + o_.hub);
  const std::string version = found->version;
  {
    MutexLock l(&mu_);
    if (version == current_.version || version == previous_.version ||
        std::find(refused_.begin(), refused_.end(), version) != refused_.end()) {
      return ronghe::Status::OK();
    }
  }
  const hub::ModelFile* file = found->File("model");
  const std::string name = version + ".rhe";
  const std::string path = o_.state_dir + "/versions/" + name;
  auto refuse = [&](const std::string& why) {
    MutexLock l(&mu_);
    refused_.push_back(version);
    (void)SaveState();
    Event("refused", version, why);
    return ronghe::Status::OK();
  };
  if (file == nullptr) return refuse("the hub lists no model file for this version");
  // Checked against the signed length and sha256 while it streams in.
  ronghe::Status dl = client_->Download(*file, path);
  if (!dl.ok()) return refuse(dl.message());
  auto model = Model::Load(path);
  if (!model.ok()) return refuse(model.status().message());
  std::shared_ptr<const Model> candidate = std::move(model).value();
  MutexLock l(&mu_);
  if (current_.model && (candidate->input_size() != current_.model->input_size() ||
                         candidate->outputs() != current_.model->outputs())) {
    l.Unlock();
    return refuse("its inputs or outputs differ from the running model's");
  }
  double mape = 0, p99 = 0, old_mape = 0, old_p99 = 0;
  int64_t n = 0, old_n = 0;
  if (!Backtest(*candidate, o_.shadow_windows, &mape, &p99, &n)) {
    refused_.push_back(version);
    (void)SaveState();
    Event("refused", version, "non-finite forecasts on the node's recent inputs");
    return ronghe::Status::OK();
  }
  if (p99 > o_.max_p99_us) {
    refused_.push_back(version);
    (void)SaveState();
    Event("refused", version,
          "p99 " + std::to_string(p99) + " us over the limit of " + std::to_string(o_.max_p99_us));
    return ronghe::Status::OK();
  }
  std::string detail = "shadowed on " + std::to_string(n) + " recent windows";
  if (current_.model) {
    Backtest(*current_.model, o_.shadow_windows, &old_mape, &old_p99, &old_n);
    if (n >= o_.min_shadow && mape > old_mape * (1 + o_.margin) + 1e-9) {
      refused_.push_back(version);
      (void)SaveState();
      Event("refused", version,
            "MAPE " + std::to_string(mape) + "% on " + std::to_string(n) +
                " recent windows against " + std::to_string(old_mape) + "% for " +
                current_.version);
      return ronghe::Status::OK();
    }
    detail += ": MAPE " + std::to_string(mape) + "% against " + std::to_string(old_mape) + "%";
  }
  const std::string from = current_.version;
  Switch({candidate, version, name});
  RETURN_IF_ERROR(SaveState());
  Event("switched", version, detail + (from.empty() ? "" : "; previous " + from));
  return ronghe::Status::OK();
}

ronghe::Status Agent::Observe(const std::vector<float>& row) {
  MutexLock l(&mu_);
  if (current_.model && static_cast<int64_t>(row.size()) != current_.model->features()) {
    return InvalidArgument("an observation has " + std::to_string(current_.model->features()) +
                           " values, got " + std::to_string(row.size()));
  }
  for (float v : row)
    if (!std::isfinite(v)) return InvalidArgument("an observation value is not a finite number");
  if (!row.empty() && !pending_.empty()) {
    const double e = Ape(pending_[0], row[0]);
    recent_ape_.push_back(e);
    if (recent_ape_.size() > 168) recent_ape_.pop_front();
    if (watch_left_ > 0 && !pending_prev_.empty()) {
      watch_err_ += e;
      watch_err_prev_ += Ape(pending_prev_[0], row[0]);
      ++watch_n_;
      if (--watch_left_ == 0) {
        const double now = watch_err_ / watch_n_, before = watch_err_prev_ / watch_n_;
        if (now > before * (1 + o_.margin) + 1e-9) {
          RollBack("MAPE " + std::to_string(now) + "% over the " + std::to_string(watch_n_) +
                   " observations after the switch against " + std::to_string(before) +
                   "% for the previous version");
        } else {
          Event("kept", current_.version,
                "MAPE " + std::to_string(now) + "% against " + std::to_string(before) + "% over " +
                    std::to_string(watch_n_) + " observations");
        }
      }
    }
  }
  history_.push_back(row);
  while (static_cast<int64_t>(history_.size()) > o_.history) history_.pop_front();
  pending_.clear();
  pending_prev_.clear();
  if (!current_.model || static_cast<int64_t>(history_.size()) < current_.model->steps())
    return ronghe::Status::OK();
  // The forecasts for the next step, scored when it arrives.
  const int64_t steps = current_.model->steps(), f = current_.model->features();
  std::vector<float> x(static_cast<size_t>(steps * f));
  for (int64_t t = 0; t < steps; ++t) {
    const auto& r = history_[history_.size() - static_cast<size_t>(steps - t)];
    std::copy(r.begin(), r.end(), x.begin() + t * f);
  }
  pending_.resize(static_cast<size_t>(current_.model->outputs()));
  RETURN_IF_ERROR(current_.model->Predict(x.data(), steps * f, pending_.data()));
  bool finite =
      std::all_of(pending_.begin(), pending_.end(), [](float v) { return std::isfinite(v); });
  if (watch_left_ > 0 && previous_.model) {
    pending_prev_.resize(static_cast<size_t>(previous_.model->outputs()));
    RETURN_IF_ERROR(previous_.model->Predict(x.data(), steps * f, pending_prev_.data()));
    if (!finite) {
      RollBack("a non-finite forecast after the switch");
      pending_.clear();
      pending_prev_.clear();
    }
  } else if (!finite) {
    Event("non-finite", current_.version, "a non-finite forecast and no previous version to run");
    pending_.clear();
  }
  return ronghe::Status::OK();
}

Result<std::vector<float>> Agent::Forecast() const {
  MutexLock l(&mu_);
  if (!current_.model) return Unavailable("no model is running yet");
  const int64_t steps = current_.model->steps(), f = current_.model->features();
  if (static_cast<int64_t>(history_.size()) < steps)
    return Unavailable("the node holds " + std::to_string(history_.size()) +
                       " observations; a forecast needs " + std::to_string(steps));
  std::vector<float> x(static_cast<size_t>(steps * f));
  for (int64_t t = 0; t < steps; ++t) {
    const auto& r = history_[history_.size() - static_cast<size_t>(steps - t)];
    std::copy(r.begin(), r.end(), x.begin() + t * f);
  }
  std::vector<float> out(static_cast<size_t>(current_.model->outputs()));
  RETURN_IF_ERROR(current_.model->Predict(x.data(), steps * f, out.data()));
  return out;
}

nlohmann::json Agent::Describe() const {
  MutexLock l(&mu_);
  double mape = 0;
  for (double e : recent_ape_) mape += e;
  nlohmann::json j = {
      {"node", o_.node},
      {"model", o_.model},
      {"version", current_.version},
      {"previous", previous_.version},
      {"refused", refused_},
      {"phase", watch_left_ > 0 ? "watching" : "steady"},
      {"observations", history_.size()},
      {"recent_mape",
       recent_ape_.empty() ? nlohmann::json(nullptr) : nlohmann::json(mape / recent_ape_.size())}};
  return j;
}

}  // namespace ronghe::edge
