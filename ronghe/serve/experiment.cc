#include "ronghe/serve/experiment.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "ronghe/store/run_store.h"

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

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }
  void Reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::string Text(int c) const {
    const unsigned char* t = sqlite3_column_text(s_, c);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  double Double(int c) const { return sqlite3_column_double(s_, c); }
  int64_t Int(int c) const { return sqlite3_column_int64(s_, c); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

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
    double rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;  // average rank of ties
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
  double se = std::sqrt(p * (1 - p) * (1.0 / static_cast<double>(n1) + 1.0 / static_cast<double>(n2)));
  if (!(se > 0)) return {};
  double z = (p2 - p1) / se;  // z > 0: the second proportion is higher
  return {z, NormalTwoSidedP(z)};
}

struct Experiments::Impl {
  sqlite3* db = nullptr;
  std::string path;
  bool temporary = false;
  struct Row {
    std::string experiment, variant, request_id;
    int64_t latency_us;
    bool ok;
    double at;
  };
  std::mutex mu;  // queue, decisions, counters
  std::condition_variable cv;
  std::vector<Row> queue;
  bool stop = false;
  bool writing = false;  // the writer holds rows taken from the queue and not yet committed
  bool flush = false;    // someone waits in Flush(): write now rather than at the next tick
  std::map<std::string, std::string> decided;  // experiment -> decided variant label
  std::map<std::string, std::map<std::string, std::pair<int64_t, int64_t>>> counters;
  std::thread writer;
  std::mutex db_mu;  // one statement at a time on the connection

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "?";
      sqlite3_free(err);
      return Unavailable(path + ": sqlite: " + m);
    }
    return Status::OK();
  }

  Status WriteRows(std::vector<Row>& rows) {
    if (rows.empty()) return Status::OK();
    std::lock_guard<std::mutex> l(db_mu);
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Stmt s(db, "INSERT INTO experiment_requests(experiment, request_id, variant, latency_us, ok, recorded_at) "
               "VALUES (?, ?, ?, ?, ?, ?)");
    if (!s.ok()) {
      (void)Exec("ROLLBACK");
      return Unavailable(path + ": sqlite: " + sqlite3_errmsg(db));
    }
    for (const Row& r : rows) {
      s.Bind(1, r.experiment).Bind(2, r.request_id).Bind(3, r.variant).Bind(4, r.latency_us)
          .Bind(5, static_cast<int64_t>(r.ok)).Bind(6, r.at);
      if (s.Step() != SQLITE_DONE) {
        (void)Exec("ROLLBACK");
        return Unavailable(path + ": sqlite: " + sqlite3_errmsg(db));
      }
      s.Reset();
    }
    rows.clear();
    return Exec("COMMIT");
  }

  void RefreshDecisions() {
    std::map<std::string, std::string> d;
    {
      std::lock_guard<std::mutex> l(db_mu);
      Stmt s(db, "SELECT name, decided_variant FROM experiments WHERE status != 'running'");
      while (s.ok() && s.Step() == SQLITE_ROW) d[s.Text(0)] = s.Text(1);
    }
    std::lock_guard<std::mutex> l(mu);
    decided = std::move(d);
  }

  void Loop() {
    auto last_refresh = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> l(mu);
    while (true) {
      cv.wait_for(l, std::chrono::milliseconds(200), [&] { return stop || flush || queue.size() >= 1000; });
      flush = false;
      std::vector<Row> rows;
      rows.swap(queue);
      writing = !rows.empty();
      bool stopping = stop;
      l.unlock();
      if (Status st = WriteRows(rows); !st.ok()) {
        std::fprintf(stderr, "ronghe serve: experiment records lost: %s\n", st.message().c_str());
      }
      if (std::chrono::steady_clock::now() - last_refresh > std::chrono::seconds(1)) {
        RefreshDecisions();
        last_refresh = std::chrono::steady_clock::now();
      }
      l.lock();
      writing = false;
      cv.notify_all();  // wakes Flush()
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
  {
    // Creates or migrates the schema (the experiment tables live in the run store's database).
    ASSIGN_OR_RETURN(auto store, store::RunStore::Open(impl->path));
  }
  if (sqlite3_open_v2(impl->path.c_str(), &impl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string why = impl->db ? sqlite3_errmsg(impl->db) : "out of memory";
    sqlite3_close(impl->db);
    return IoError(impl->path + ": " + why);
  }
  sqlite3_busy_timeout(impl->db, 30000);
  RETURN_IF_ERROR(impl->Exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"));
  impl->RefreshDecisions();
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->Loop(); });
  return std::unique_ptr<Experiments>(new Experiments(std::move(impl)));
}

Experiments::~Experiments() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->writer.joinable()) impl_->writer.join();
  sqlite3_close(impl_->db);
  if (impl_->temporary) {
    ::unlink(impl_->path.c_str());
    ::unlink((impl_->path + "-wal").c_str());
    ::unlink((impl_->path + "-shm").c_str());
  }
}

Status Experiments::Register(const std::string& model, const ExperimentSettings& e) {
  std::lock_guard<std::mutex> l(impl_->db_mu);
  Stmt s(impl_->db,
         "INSERT INTO experiments(name, model, variants_json, weights_json, sticky_key, status, created_at) "
         "VALUES (?, ?, ?, ?, ?, 'running', ?) ON CONFLICT(name) DO UPDATE SET "
         "model = excluded.model, variants_json = excluded.variants_json, "
         "weights_json = excluded.weights_json, sticky_key = excluded.sticky_key");
  if (!s.ok()) return Unavailable(impl_->path + ": sqlite: " + sqlite3_errmsg(impl_->db));
  s.Bind(1, e.name).Bind(2, model).Bind(3, json(e.variants).dump()).Bind(4, json(e.weights).dump())
      .Bind(5, e.sticky_key).Bind(6, UnixNow());
  if (s.Step() != SQLITE_DONE) return Unavailable(impl_->path + ": sqlite: " + sqlite3_errmsg(impl_->db));
  return Status::OK();
}

int Experiments::Pick(const ExperimentSettings& e, const std::string& key) {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
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
  std::lock_guard<std::mutex> l(impl_->mu);
  auto& c = impl_->counters[experiment][variant];
  ++c.first;
  if (!ok) ++c.second;
  // A decided experiment is over: its evidence stays as it was when decided, and the store does
  // not grow by a row per request for as long as the winner serves.
  if (impl_->decided.count(experiment)) return;
  impl_->queue.push_back({experiment, variant, request_id, static_cast<int64_t>(latency_s * 1e6), ok, UnixNow()});
  if (impl_->queue.size() >= 1000) impl_->cv.notify_all();
}

Status Experiments::Flush() {
  std::unique_lock<std::mutex> l(impl_->mu);
  impl_->flush = true;
  impl_->cv.notify_all();
  impl_->cv.wait(l, [&] { return (impl_->queue.empty() && !impl_->writing) || impl_->stop; });
  return Status::OK();
}

Status Experiments::Feedback(const std::string& experiment, const std::string& request_id, double outcome) {
  if (outcome != 0 && outcome != 1) return InvalidArgument("outcome must be 0 or 1");
  if (request_id.empty()) return InvalidArgument("feedback needs the request's id");
  RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> l(impl_->db_mu);
  {
    Stmt s(impl_->db, "SELECT 1 FROM experiment_requests WHERE experiment = ? AND request_id = ? LIMIT 1");
    s.Bind(1, experiment).Bind(2, request_id);
    if (!s.ok() || s.Step() != SQLITE_ROW) {
      return NotFound("experiment '" + experiment + "' has no request with id '" + request_id.substr(0, 128) + "'");
    }
  }
  Stmt s(impl_->db, "INSERT OR REPLACE INTO experiment_feedback(experiment, request_id, outcome, recorded_at) "
                    "VALUES (?, ?, ?, ?)");
  s.Bind(1, experiment).Bind(2, request_id).Bind(3, outcome).Bind(4, UnixNow());
  if (!s.ok() || s.Step() != SQLITE_DONE) return Unavailable(impl_->path + ": sqlite: " + sqlite3_errmsg(impl_->db));
  return Status::OK();
}

std::vector<std::string> Experiments::List() {
  std::lock_guard<std::mutex> l(impl_->db_mu);
  std::vector<std::string> out;
  Stmt s(impl_->db, "SELECT name FROM experiments ORDER BY created_at");
  while (s.ok() && s.Step() == SQLITE_ROW) out.push_back(s.Text(0));
  return out;
}

Status Experiments::Decide(const std::string& name, const std::string& status, const std::string& variant) {
  {
    std::lock_guard<std::mutex> l(impl_->db_mu);
    Stmt s(impl_->db, "UPDATE experiments SET status = ?, decided_variant = ?, decided_at = ? WHERE name = ?");
    s.Bind(1, status).Bind(2, variant).Bind(3, UnixNow()).Bind(4, name);
    if (!s.ok() || s.Step() != SQLITE_DONE) return Unavailable(impl_->path + ": sqlite: " + sqlite3_errmsg(impl_->db));
    if (sqlite3_changes(impl_->db) == 0) return NotFound("no experiment '" + name + "'");
  }
  impl_->RefreshDecisions();
  return Status::OK();
}

Result<ExperimentReport> Experiments::Report(const std::string& name) {
  RETURN_IF_ERROR(Flush());
  ExperimentReport r;
  std::lock_guard<std::mutex> l(impl_->db_mu);
  {
    Stmt s(impl_->db, "SELECT model, variants_json, weights_json, status, decided_variant FROM experiments WHERE name = ?");
    s.Bind(1, name);
    if (!s.ok() || s.Step() != SQLITE_ROW) return NotFound("no experiment '" + name.substr(0, 128) + "'");
    r.name = name;
    r.model = s.Text(0);
    json v = json::parse(s.Text(1), nullptr, false), w = json::parse(s.Text(2), nullptr, false);
    if (!v.is_array() || !w.is_array()) return DataLoss(impl_->path + ": experiment '" + name + "' is corrupt");
    for (const auto& x : v) r.variants.push_back(x.is_string() ? x.get<std::string>() : x.dump());
    for (const auto& x : w) r.weights.push_back(x.is_number() ? x.get<double>() : 0.0);
    r.status = s.Text(3);
    r.decided_variant = s.Text(4);
  }
  std::map<std::string, std::vector<double>> lat;
  std::map<std::string, VariantReport> by;
  for (const auto& v : r.variants) by[v].variant = v;
  {
    Stmt s(impl_->db, "SELECT variant, latency_us, ok FROM experiment_requests WHERE experiment = ?");
    s.Bind(1, name);
    while (s.ok() && s.Step() == SQLITE_ROW) {
      VariantReport& v = by[s.Text(0)];
      v.variant = s.Text(0);
      ++v.requests;
      if (s.Int(2)) lat[v.variant].push_back(s.Double(1) / 1000.0);
      else ++v.errors;
    }
  }
  {
    Stmt s(impl_->db,
           "SELECT r.variant, f.outcome FROM experiment_feedback f JOIN experiment_requests r "
           "ON r.experiment = f.experiment AND r.request_id = f.request_id WHERE f.experiment = ?");
    s.Bind(1, name);
    while (s.ok() && s.Step() == SQLITE_ROW) {
      VariantReport& v = by[s.Text(0)];
      ++v.feedback;
      if (s.Double(1) == 1) ++v.positives;
    }
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
    double rate = r.stats[i].feedback ? static_cast<double>(r.stats[i].positives) / static_cast<double>(r.stats[i].feedback) : -0.5;
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
    r.reason = "needs at least " + std::to_string(kMinFeedback) + " outcome labels per variant (have " +
               std::to_string(a.feedback) + " and " + std::to_string(b.feedback) + ")";
  } else if (r.outcome_p < kAlpha && r.outcome_z < 0) {
    r.verdict = "rollback";
    r.reason = "'" + b.variant + "' has a significantly lower outcome rate than '" + a.variant + "'";
  } else if (r.outcome_p < kAlpha && r.outcome_z > 0) {
    // Slower counts when it is both significant and material: with thousands of requests the
    // U test detects differences of a few microseconds that nobody would trade outcomes for.
    bool slower = r.latency_p < kAlpha && r.latency_z > 0 && b.p50_ms > a.p50_ms * (1 + kMaterialSlowdown);
    if (slower) {
      r.verdict = "continue";
      r.reason = "'" + b.variant + "' is better on outcomes but significantly and materially slower (median " +
                 std::to_string(b.p50_ms) + " vs " + std::to_string(a.p50_ms) + " ms): a trade-off to decide";
    } else {
      r.verdict = "promote";
      r.reason = "'" + b.variant + "' has a significantly higher outcome rate and is not materially slower";
    }
  } else {
    r.verdict = "continue";
    r.reason = "no significant difference in outcomes yet (p = " + std::to_string(r.outcome_p) + ")";
  }
  return r;
}

std::map<std::string, std::map<std::string, std::pair<int64_t, int64_t>>> Experiments::Counters() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->counters;
}

}  // namespace ronghe::serve
