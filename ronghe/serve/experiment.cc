#include "ronghe/serve/experiment.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "ronghe/base/mutex.h"
#include "ronghe/store/experiment_store.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double NormalTwoSidedP(double z) { return std::erfc(std::fabs(z) / std::sqrt(2.0)); }

uint64_t Fnv1a(const std::string& a, const std::string& b) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(a);
  h ^= 0xff;
  h *= 1099511628211ull;
  mix(b);
  // FNV's low bits mix poorly for short keys; finish with a 64-bit avalanche (splitmix64).
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

ExperimentTestResult MannWhitneyU(const std::vector<double>& a, const std::vector<double>& b) {
  size_t n1 = a.size(), n2 = b.size();
  if (n1 == 0 || n2 == 0) return {};
  std::vector<std::pair<double, int>> all;
  all.reserve(n1 + n2);
  for (double x : a) all.emplace_back(x, 0);
  for (double x : b) all.emplace_back(x, 1);
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  double rank_sum_a = 0, tie_term = 0;
  size_t i = 0;
  while (i < all.size()) {
    size_t j = i;
    while (j + 1 < all.size() && all[j + 1].first == all[i].first) ++j;
    double rank =
        (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;  // average rank of ties
    double t = static_cast<double>(j - i + 1);
    tie_term += t * t * t - t;
    for (size_t k = i; k <= j; ++k) {
      if (all[k].second == 0) rank_sum_a += rank;
    }
    i = j + 1;
  }
  double N1 = static_cast<double>(n1), N2 = static_cast<double>(n2), N = N1 + N2;
  double u = rank_sum_a - N1 * (N1 + 1) / 2.0;
  double mean = N1 * N2 / 2.0;
  double var = N1 * N2 / 12.0 * ((N + 1) - tie_term / (N * (N - 1)));
  if (!(var > 0)) return {};
  // z > 0: `a` tends to be larger than `b`.
  double z = (u - mean) / std::sqrt(var);
  return {z, NormalTwoSidedP(z)};
}

ExperimentTestResult TwoProportionZ(int64_t x1, int64_t n1, int64_t x2, int64_t n2) {
  if (n1 <= 0 || n2 <= 0) return {};
  double p1 = static_cast<double>(x1) / static_cast<double>(n1);
  double p2 = static_cast<double>(x2) / static_cast<double>(n2);
  double p = static_cast<double>(x1 + x2) / static_cast<double>(n1 + n2);
  double se =
      std::sqrt(p * (1 - p) * (1.0 / static_cast<double>(n1) + 1.0 / static_cast<double>(n2)));
  if (!(se > 0)) return {};
  double z = (p2 - p1) / se;  // z > 0: the second proportion is higher
  return {z, NormalTwoSidedP(z)};
}

struct Experiments::Impl {
  std::unique_ptr<store::ExperimentStore> db;
  std::string path;
  bool temporary = false;
  Mutex mu;  // queue, decisions, counters
  CondVar cv;
  std::vector<store::ExperimentRequestRecord> queue GUARDED_BY(mu);
  bool stop GUARDED_BY(mu) = false;
  bool writing GUARDED_BY(mu) =
      false;  // the writer holds rows taken from the queue and not yet committed
  bool flush GUARDED_BY(mu) =
      false;  // someone waits in Flush(): write now rather than at the next tick
  std::map<std::string, std::string> decided GUARDED_BY(mu);  // experiment -> decided variant label
  std::map<std::string, std::map<std::string, std::pair<int64_t, int64_t>>> counters GUARDED_BY(mu);
  std::thread writer;

  void RefreshDecisions() EXCLUDES(mu) {
    auto d = db->Decisions();
    if (!d.ok()) return;  // the previous decisions stay in force until the store answers again
    MutexLock l(&mu);
    decided = std::move(*d);
  }

  void Loop() EXCLUDES(mu) {
    auto last_refresh = std::chrono::steady_clock::now();
    MutexLock l(&mu);
    while (true) {
      cv.WaitFor(&mu, std::chrono::milliseconds(200), [&] {
        mu.AssertHeld();
        return stop || flush || queue.size() >= 1000;
      });
      flush = false;
      std::vector<store::ExperimentRequestRecord> rows;
      rows.swap(queue);
      writing = !rows.empty();
      bool stopping = stop;
      l.Unlock();
      if (Status st = db->AddRequests(rows); !st.ok()) {
        std::fprintf(stderr, "ronghe serve: experiment records lost: %s\n", st.message().c_str());
      }
      if (std::chrono::steady_clock::now() - last_refresh > std::chrono::seconds(1)) {
        RefreshDecisions();
        last_refresh = std::chrono::steady_clock::now();
      }
      l.Lock();
      writing = false;
      cv.NotifyAll();  // wakes Flush()
      if (stopping && queue.empty()) return;
    }
  }
};

Experiments::Experiments(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Experiments>> Experiments::Open(const std::string& db_path) {
  auto impl = std::make_unique<Impl>();
  impl->path = db_path;
  if (impl->path.empty()) {
    char tmpl[] = "/tmp/ronghe-experiments-XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0) return IoError("cannot create a temporary experiment store");
    ::close(fd);
    impl->path = tmpl;
    impl->temporary = true;
  }
  ASSIGN_OR_RETURN(impl->db, store::ExperimentStore::Open(impl->path));
  impl->RefreshDecisions();
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->Loop(); });
  return std::unique_ptr<Experiments>(new Experiments(std::move(impl)));
}

Experiments::~Experiments() {
  {
    MutexLock l(&impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.NotifyAll();
  if (impl_->writer.joinable()) impl_->writer.join();
  impl_->db.reset();
  if (impl_->temporary) {
    ::unlink(impl_->path.c_str());
    ::unlink((impl_->path + "-wal").c_str());
    ::unlink((impl_->path + "-shm").c_str());
  }
}

Status Experiments::Register(const std::string& model, const ExperimentSettings& e) {
  return impl_->db->Upsert({e.name, model, json(e.variants).dump(), json(e.weights).dump(),
                            e.sticky_key, "running", ""});
}

int Experiments::Pick(const ExperimentSettings& e, const std::string& key) {
  {
    MutexLock l(&impl_->mu);
    auto d = impl_->decided.find(e.name);
    if (d != impl_->decided.end()) {
      for (size_t i = 0; i < e.variants.size(); ++i) {
        if (e.variants[i] == d->second) return static_cast<int>(i);
      }
    }
  }
  double u;
  if (!key.empty()) {
    u = static_cast<double>(Fnv1a(e.name, key) >> 11) * 0x1.0p-53;
  } else {
    thread_local std::mt19937_64 rng(std::random_device{}());
    u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  }
  double total = 0;
  for (double w : e.weights) total += w;
  double acc = 0;
  for (size_t i = 0; i < e.weights.size(); ++i) {
    acc += e.weights[i] / total;
    if (u < acc && e.weights[i] > 0) return static_cast<int>(i);
  }
  for (size_t i = e.weights.size(); i-- > 0;) {
    if (e.weights[i] > 0) return static_cast<int>(i);
  }
  return 0;
}

void Experiments::Record(const std::string& experiment, const std::string& variant,
                         const std::string& request_id, double latency_s, bool ok) {
  MutexLock l(&impl_->mu);
  auto& c = impl_->counters[experiment][variant];
  ++c.first;
  if (!ok) ++c.second;
  // A decided experiment is over: its evidence stays as it was when decided, and the store does
  // not grow by a row per request for as long as the winner serves.
  if (impl_->decided.count(experiment)) return;
  impl_->queue.push_back(
      {experiment, variant, request_id, static_cast<int64_t>(latency_s * 1e6), ok, UnixNow()});
  if (impl_->queue.size() >= 1000) impl_->cv.NotifyAll();
}

Status Experiments::Flush() {
  Impl& s = *impl_;
  MutexLock l(&s.mu);
  s.flush = true;
  s.cv.NotifyAll();
  s.cv.Wait(&s.mu, [&] {
    s.mu.AssertHeld();
    return (s.queue.empty() && !s.writing) || s.stop;
  });
  return Status::OK();
}

Status Experiments::Feedback(const std::string& experiment, const std::string& request_id,
                             double outcome) {
  if (outcome != 0 && outcome != 1) return InvalidArgument("outcome must be 0 or 1");
  if (request_id.empty()) return InvalidArgument("feedback needs the request's id");
  RETURN_IF_ERROR(Flush());
  return impl_->db->AddFeedback(experiment, request_id, outcome);
}

std::vector<std::string> Experiments::List() {
  auto names = impl_->db->Names();
  return names.ok() ? *names : std::vector<std::string>{};
}

Status Experiments::Decide(const std::string& name, const std::string& status,
                           const std::string& variant) {
  RETURN_IF_ERROR(impl_->db->Decide(name, status, variant));
  impl_->RefreshDecisions();
  return Status::OK();
}

Result<ExperimentReport> Experiments::Report(const std::string& name) {
  RETURN_IF_ERROR(Flush());
  ExperimentReport r;
  ASSIGN_OR_RETURN(store::ExperimentRecord rec, impl_->db->Get(name));
  r.name = name;
  r.model = rec.model;
  json v = json::parse(rec.variants_json, nullptr, false),
       w = json::parse(rec.weights_json, nullptr, false);
  if (!v.is_array() || !w.is_array())
    return DataLoss(impl_->path + ": experiment '" + name + "' is corrupt");
  for (const auto& x : v) r.variants.push_back(x.is_string() ? x.get<std::string>() : x.dump());
  for (const auto& x : w) r.weights.push_back(x.is_number() ? x.get<double>() : 0.0);
  r.status = rec.status;
  r.decided_variant = rec.decided_variant;
  std::map<std::string, std::vector<double>> lat;
  std::map<std::string, VariantReport> by;
  for (const auto& x : r.variants) by[x].variant = x;
  ASSIGN_OR_RETURN(auto requests, impl_->db->Requests(name));
  for (const auto& q : requests) {
    VariantReport& x = by[q.variant];
    x.variant = q.variant;
    ++x.requests;
    if (q.ok)
      lat[x.variant].push_back(static_cast<double>(q.latency_us) / 1000.0);
    else
      ++x.errors;
  }
  ASSIGN_OR_RETURN(auto outcomes, impl_->db->Outcomes(name));
  for (const auto& o : outcomes) {
    VariantReport& x = by[o.variant];
    ++x.feedback;
    if (o.outcome == 1) ++x.positives;
  }
  for (const auto& v : r.variants) {
    VariantReport x = by[v];
    const auto& l2 = lat[v];
    x.p50_ms = Quantile(l2, 0.5);
    x.p99_ms = Quantile(l2, 0.99);
    double sum = 0;
    for (double t : l2) sum += t;
    x.mean_ms = l2.empty() ? 0 : sum / static_cast<double>(l2.size());
    r.stats.push_back(x);
  }
  // Control = variant 0; the challenger compared is the other variant with the best outcome rate.
  double best = -1;
  for (size_t i = 1; i < r.stats.size(); ++i) {
    double rate = r.stats[i].feedback ? static_cast<double>(r.stats[i].positives) /
                                            static_cast<double>(r.stats[i].feedback)
                                      : -0.5;
    if (rate > best) {
      best = rate;
      r.compared = static_cast<int>(i);
    }
  }
  const VariantReport& a = r.stats[0];
  const VariantReport& b = r.stats[static_cast<size_t>(r.compared)];
  auto mw = MannWhitneyU(lat[b.variant], lat[a.variant]);
  r.latency_z = mw.z;
  r.latency_p = mw.p;
  auto tp = TwoProportionZ(a.positives, a.feedback, b.positives, b.feedback);
  r.outcome_z = tp.z;
  r.outcome_p = tp.p;
  constexpr double kAlpha = 0.05;
  constexpr int64_t kMinFeedback = 30;
  constexpr double kMaterialSlowdown = 0.10;  // a median more than 10% higher
  if (a.feedback < kMinFeedback || b.feedback < kMinFeedback) {
    r.verdict = "continue";
    r.reason = "needs at least " + std::to_string(kMinFeedback) +
               " outcome labels per variant (have " + std::to_string(a.feedback) + " and " +
               std::to_string(b.feedback) + ")";
  } else if (r.outcome_p < kAlpha && r.outcome_z < 0) {
    r.verdict = "rollback";
    r.reason =
        "'" + b.variant + "' has a significantly lower outcome rate than '" + a.variant + "'";
  } else if (r.outcome_p < kAlpha && r.outcome_z > 0) {
    // Slower counts when it is both significant and material: with thousands of requests the
    // U test detects differences of a few microseconds that nobody would trade outcomes for.
    bool slower =
        r.latency_p < kAlpha && r.latency_z > 0 && b.p50_ms > a.p50_ms * (1 + kMaterialSlowdown);
    if (slower) {
      r.verdict = "continue";
      r.reason = "'" + b.variant +
                 "' is better on outcomes but significantly and materially slower (median " +
                 std::to_string(b.p50_ms) + " vs " + std::to_string(a.p50_ms) +
                 " ms): a trade-off to decide";
    } else {
      r.verdict = "promote";
      r.reason = "'" + b.variant +
                 "' has a significantly higher outcome rate and is not materially slower";
    }
  } else {
    r.verdict = "continue";
    r.reason =
        "no significant difference in outcomes yet (p = " + std::to_string(r.outcome_p) + ")";
  }
  return r;
}

Result<std::string> Experiments::Conclude(const std::string& name, bool promote,
                                          const std::string& variant) {
  ASSIGN_OR_RETURN(ExperimentReport r, Report(name));
  std::string v = variant;
  if (v.empty())
    v = promote ? r.stats[static_cast<size_t>(r.compared)].variant : r.stats[0].variant;
  if (std::find(r.variants.begin(), r.variants.end(), v) == r.variants.end()) {
    return InvalidArgument("experiment '" + r.name + "' has no variant '" + v + "'");
  }
  RETURN_IF_ERROR(Decide(r.name, promote ? "promoted" : "rolled_back", v));
  return v;
}

json ReportJson(const ExperimentReport& r) {
  json vars = json::array();
  for (const auto& v : r.stats) {
    vars.push_back({{"variant", v.variant},
                    {"requests", v.requests},
                    {"errors", v.errors},
                    {"p50_ms", v.p50_ms},
                    {"p99_ms", v.p99_ms},
                    {"mean_ms", v.mean_ms},
                    {"feedback", v.feedback},
                    {"positives", v.positives}});
  }
  const size_t c = static_cast<size_t>(r.compared);
  return {
      {"name", r.name},
      {"model", r.model},
      {"status", r.status},
      {"decided_variant", r.decided_variant},
      {"variants", vars},
      {"weights", r.weights},
      {"compared",
       {r.stats.empty() ? "" : r.stats[0].variant, r.stats.size() > c ? r.stats[c].variant : ""}},
      {"latency_test", {{"name", "Mann-Whitney U"}, {"z", r.latency_z}, {"p", r.latency_p}}},
      {"outcome_test", {{"name", "two-proportion z"}, {"z", r.outcome_z}, {"p", r.outcome_p}}},
      {"verdict", r.verdict},
      {"reason", r.reason}};
}

std::map<std::string, std::map<std::string, std::pair<int64_t, int64_t>>> Experiments::Counters()
    const {
  MutexLock l(&impl_->mu);
  return impl_->counters;
}

}  // namespace ronghe::serve
