#include "ronghe/store/run_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/store/sqlite.h"

namespace ronghe::store {

using internal::Stmt;

namespace {

// Forward-only migrations; migration i brings the schema from version i to i+1. Never edit one
// that has shipped: add a new one.
const char* const kMigrations[] = {
    // 0 -> 1
    R"sql(
    CREATE TABLE runs (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL,
      name TEXT NOT NULL,
      status TEXT NOT NULL,
      config_json TEXT NOT NULL,
      error TEXT NOT NULL DEFAULT '',
      host TEXT NOT NULL DEFAULT '',
      pid INTEGER NOT NULL DEFAULT 0,
      created_at REAL NOT NULL,
      finished_at REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_kind ON runs(kind, id);
    CREATE TABLE metrics (
      run_id INTEGER NOT NULL REFERENCES runs(id),
      step INTEGER NOT NULL,
      split TEXT NOT NULL,
      name TEXT NOT NULL,
      value REAL NOT NULL,
      recorded_at REAL NOT NULL
    );
    CREATE INDEX metrics_run ON metrics(run_id, step);
    CREATE TABLE artifacts (
      run_id INTEGER NOT NULL REFERENCES runs(id),
      kind TEXT NOT NULL,
      path TEXT NOT NULL,
      sha256 TEXT NOT NULL,
      bytes INTEGER NOT NULL,
      recorded_at REAL NOT NULL
    );
    CREATE TABLE resources (
      run_id INTEGER PRIMARY KEY REFERENCES runs(id),
      wall_seconds REAL NOT NULL,
      cpu_user_seconds REAL NOT NULL,
      cpu_system_seconds REAL NOT NULL,
      peak_rss_bytes INTEGER NOT NULL,
      device TEXT NOT NULL,
      processes INTEGER NOT NULL
    );
    )sql",
    // 1 -> 2: federated (and any other) jobs checkpoint their state per step in one row, written
    // in the same transaction as that step's metrics.
    R"sql(
    CREATE TABLE checkpoints (
      run_id INTEGER NOT NULL REFERENCES runs(id),
      step INTEGER NOT NULL,
      state BLOB NOT NULL,
      meta_json TEXT NOT NULL,
      recorded_at REAL NOT NULL,
      PRIMARY KEY (run_id, step)
    );
    )sql",
    // 2 -> 3: A/B experiments of the inference server (ronghe/serve/experiment.h): each answered
    // request of an experiment, the outcome labels fed back for them, and the decision.
    R"sql(
    CREATE TABLE experiments (
      name TEXT PRIMARY KEY,
      model TEXT NOT NULL,
      variants_json TEXT NOT NULL,
      weights_json TEXT NOT NULL,
      sticky_key TEXT NOT NULL,
      status TEXT NOT NULL,
      decided_variant TEXT NOT NULL DEFAULT '',
      created_at REAL NOT NULL,
      decided_at REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE experiment_requests (
      experiment TEXT NOT NULL REFERENCES experiments(name),
      request_id TEXT NOT NULL,
      variant TEXT NOT NULL,
      latency_us INTEGER NOT NULL,
      ok INTEGER NOT NULL,
      recorded_at REAL NOT NULL
    );
    CREATE INDEX experiment_requests_by_id ON experiment_requests(experiment, request_id);
    CREATE TABLE experiment_feedback (
      experiment TEXT NOT NULL REFERENCES experiments(name),
      request_id TEXT NOT NULL,
      outcome REAL NOT NULL,
      recorded_at REAL NOT NULL,
      PRIMARY KEY (experiment, request_id)
    );
    )sql",
    // 3 -> 4: streaming inspection (ronghe/stream): decisions per frame, the review queue of
    // frames flagged as novel (with their pixels) and their labels, each production line's state,
    // and the adaptation jobs' releases.
    R"sql(
    CREATE TABLE stream_events (
      line TEXT NOT NULL,
      source TEXT NOT NULL,
      seq INTEGER NOT NULL,
      frame_time REAL NOT NULL,
      class TEXT NOT NULL,
      confidence REAL NOT NULL,
      score REAL NOT NULL,
      flagged INTEGER NOT NULL,
      latency_ms REAL NOT NULL,
      model_version INTEGER NOT NULL,
      decided_at REAL NOT NULL
    );
    CREATE INDEX stream_events_by_line ON stream_events(line, decided_at);
    CREATE TABLE stream_review (
      id INTEGER PRIMARY KEY,
      model TEXT NOT NULL,
      line TEXT NOT NULL,
      source TEXT NOT NULL,
      seq INTEGER NOT NULL,
      frame_time REAL NOT NULL,
      height INTEGER NOT NULL,
      width INTEGER NOT NULL,
      pixels BLOB NOT NULL,
      predicted TEXT NOT NULL,
      confidence REAL NOT NULL,
      score REAL NOT NULL,
      model_version INTEGER NOT NULL,
      truth TEXT NOT NULL DEFAULT '',
      label TEXT NOT NULL DEFAULT '',
      flagged_at REAL NOT NULL,
      labelled_at REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX stream_review_by_label ON stream_review(model, label);
    CREATE TABLE stream_lines (
      line TEXT PRIMARY KEY,
      pid INTEGER NOT NULL,
      host TEXT NOT NULL,
      model TEXT NOT NULL,
      version INTEGER NOT NULL,
      pinned INTEGER NOT NULL DEFAULT 0,
      frames_in INTEGER NOT NULL,
      frames_decided INTEGER NOT NULL,
      frames_dropped INTEGER NOT NULL,
      novelty_rate REAL NOT NULL,
      p99_ms REAL NOT NULL,
      state TEXT NOT NULL,
      detail TEXT NOT NULL DEFAULT '',
      updated_at REAL NOT NULL
    );
    CREATE TABLE stream_releases (
      id INTEGER PRIMARY KEY,
      model TEXT NOT NULL,
      version INTEGER NOT NULL,
      new_class TEXT NOT NULL,
      status TEXT NOT NULL,
      detail_json TEXT NOT NULL,
      created_at REAL NOT NULL
    );
    CREATE TABLE stream_rollbacks (
      line TEXT NOT NULL,
      model TEXT NOT NULL,
      version INTEGER NOT NULL,
      reason TEXT NOT NULL,
      created_at REAL NOT NULL,
      PRIMARY KEY (line, model, version)
    );
    )sql",
};
constexpr int kLatest = sizeof(kMigrations) / sizeof(kMigrations[0]);

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string HostName() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

bool ProcessAlive(const std::string& host, int64_t pid) {
  if (host != HostName() || pid <= 0) return true;  // cannot tell for another host
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

int RunStore::LatestSchemaVersion() { return kLatest; }

Result<std::unique_ptr<RunStore>> RunStore::Open(const std::string& path,
                                                 const StoreOptions& options) {
  ASSIGN_OR_RETURN(sqlite3 * db,
                   internal::OpenDatabase(path, options.busy_timeout_ms, /*create=*/true));
  std::unique_ptr<RunStore> store(new RunStore(db, path));
  RETURN_IF_ERROR(store->Migrate().WithContext(path));
  return store;
}

RunStore::~RunStore() { sqlite3_close(db_); }

Status RunStore::Exec(const std::string& sql) { return internal::Exec(db_, sql); }

template <typename Fn>
Status RunStore::InTransaction(Fn&& fn) {
  return internal::InTransaction(db_, std::forward<Fn>(fn));
}

Result<int> RunStore::SchemaVersion() {
  MutexLock lock(&mu_);
  Stmt s(db_, "PRAGMA user_version");
  RETURN_IF_PREPARE_ERROR(s);
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? static_cast<int>(s.Int(0)) : 0;
}

Status RunStore::Migrate() {
  MutexLock lock(&mu_);
  // The version is re-read inside the write transaction so two processes never both migrate.
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_, "PRAGMA user_version");
    RETURN_IF_PREPARE_ERROR(s);
    ASSIGN_OR_RETURN(bool row, s.Step());
    int version = row ? static_cast<int>(s.Int(0)) : 0;
    if (version > kLatest) {
      return FailedPrecondition("run store schema version " + std::to_string(version) +
                                " is newer than this ronghe understands (" +
                                std::to_string(kLatest) + "); upgrade ronghe");
    }
    for (int v = version; v < kLatest; ++v) {
      RETURN_IF_ERROR(
          Exec(kMigrations[v]).WithContext("migration to schema " + std::to_string(v + 1)));
    }
    if (version != kLatest)
      RETURN_IF_ERROR(Exec("PRAGMA user_version = " + std::to_string(kLatest)));
    return Status::OK();
  });
}

Result<int64_t> RunStore::CreateRun(const std::string& kind, const std::string& name,
                                    const std::string& config_json) {
  MutexLock lock(&mu_);
  int64_t id = 0;
  RETURN_IF_ERROR(InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_,
           "INSERT INTO runs(kind, name, status, config_json, host, pid, created_at) "
           "VALUES (?, ?, 'running', ?, ?, ?, ?)");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, kind)
        .Bind(2, name)
        .Bind(3, config_json)
        .Bind(4, HostName())
        .Bind(5, static_cast<int64_t>(::getpid()))
        .Bind(6, UnixNow());
    RETURN_IF_ERROR(s.Run());
    id = sqlite3_last_insert_rowid(db_);
    return Status::OK();
  }));
  return id;
}

Status RunStore::ReopenRun(int64_t run_id) {
  MutexLock lock(&mu_);
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_,
           "UPDATE runs SET status='running', error='', host=?, pid=?, finished_at=0 WHERE id=?");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, HostName()).Bind(2, static_cast<int64_t>(::getpid())).Bind(3, run_id);
    RETURN_IF_ERROR(s.Run());
    if (sqlite3_changes(db_) == 0) return NotFound("run " + std::to_string(run_id) + " not found");
    return Status::OK();
  });
}

Status RunStore::FinishRun(int64_t run_id, const std::string& status, const std::string& error) {
  MutexLock lock(&mu_);
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_, "UPDATE runs SET status=?, error=?, finished_at=? WHERE id=?");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, status).Bind(2, error).Bind(3, UnixNow()).Bind(4, run_id);
    RETURN_IF_ERROR(s.Run());
    if (sqlite3_changes(db_) == 0) return NotFound("run " + std::to_string(run_id) + " not found");
    return Status::OK();
  });
}

Status RunStore::LogMetrics(int64_t run_id, const std::vector<MetricRecord>& metrics) {
  MutexLock lock(&mu_);
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();
    return LogMetricsLocked(run_id, metrics);
  });
}

Status RunStore::LogMetricsLocked(int64_t run_id, const std::vector<MetricRecord>& metrics) {
  {
    // A resumed job may log an epoch again; the newest value replaces the old one.
    Stmt del(db_, "DELETE FROM metrics WHERE run_id=? AND step=? AND split=? AND name=?");
    RETURN_IF_PREPARE_ERROR(del);
    Stmt s(
        db_,
        "INSERT INTO metrics(run_id, step, split, name, value, recorded_at) VALUES (?,?,?,?,?,?)");
    RETURN_IF_PREPARE_ERROR(s);
    double now = UnixNow();
    for (const auto& m : metrics) {
      del.Bind(1, run_id).Bind(2, m.step).Bind(3, m.split).Bind(4, m.name);
      RETURN_IF_ERROR(del.Run());
      del.Reset();
      s.Bind(1, run_id)
          .Bind(2, m.step)
          .Bind(3, m.split)
          .Bind(4, m.name)
          .Bind(5, m.value)
          .Bind(6, now);
      RETURN_IF_ERROR(s.Run());
      s.Reset();
    }
    return Status::OK();
  }
}

Status RunStore::SaveCheckpoint(int64_t run_id, const CheckpointRecord& cp,
                                const std::vector<MetricRecord>& metrics, int keep) {
  MutexLock lock(&mu_);
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_,
           "INSERT OR REPLACE INTO checkpoints(run_id, step, state, meta_json, recorded_at) VALUES "
           "(?,?,?,?,?)");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id).Bind(2, cp.step);
    s.BindBlob(3, cp.state);
    s.Bind(4, cp.meta_json).Bind(5, UnixNow());
    RETURN_IF_ERROR(s.Run());
    if (keep > 0) {
      // Older checkpoints are history nobody resumes from; keep the store small.
      Stmt del(db_,
               "DELETE FROM checkpoints WHERE run_id=? AND step NOT IN "
               "(SELECT step FROM checkpoints WHERE run_id=? ORDER BY step DESC LIMIT ?)");
      RETURN_IF_PREPARE_ERROR(del);
      del.Bind(1, run_id).Bind(2, run_id).Bind(3, static_cast<int64_t>(keep));
      RETURN_IF_ERROR(del.Run());
    }
    return LogMetricsLocked(run_id, metrics);
  });
}

Result<std::optional<CheckpointRecord>> RunStore::GetCheckpoint(int64_t run_id, int64_t step) {
  MutexLock lock(&mu_);
  Stmt s(db_,
         "SELECT step, state, meta_json FROM checkpoints WHERE run_id=? AND (step=? OR ?<0) ORDER "
         "BY step DESC LIMIT 1");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, run_id).Bind(2, step).Bind(3, step);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<CheckpointRecord>();
  CheckpointRecord cp;
  cp.step = s.Int(0);
  cp.state = s.Blob(1);
  cp.meta_json = s.Text(2);
  return std::optional<CheckpointRecord>(std::move(cp));
}

Result<std::optional<CheckpointRecord>> RunStore::LatestCheckpoint(int64_t run_id) {
  return GetCheckpoint(run_id, -1);
}

Status RunStore::AddArtifact(int64_t run_id, const ArtifactRecord& a) {
  MutexLock lock(&mu_);
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_,
           "INSERT INTO artifacts(run_id, kind, path, sha256, bytes, recorded_at) VALUES "
           "(?,?,?,?,?,?)");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id)
        .Bind(2, a.kind)
        .Bind(3, a.path)
        .Bind(4, a.sha256)
        .Bind(5, a.bytes)
        .Bind(6, UnixNow());
    return s.Run();
  });
}

Status RunStore::RecordResources(int64_t run_id, const ResourceUsage& u) {
  MutexLock lock(&mu_);
  return InTransaction([&]() -> Status {
    mu_.AssertHeld();  // the transaction runs under the caller's lock
    Stmt s(db_,
           "INSERT INTO resources(run_id, wall_seconds, cpu_user_seconds, cpu_system_seconds, "
           "peak_rss_bytes, device, processes) VALUES (?,?,?,?,?,?,?) "
           "ON CONFLICT(run_id) DO UPDATE SET "
           "wall_seconds = wall_seconds + excluded.wall_seconds, "
           "cpu_user_seconds = cpu_user_seconds + excluded.cpu_user_seconds, "
           "cpu_system_seconds = cpu_system_seconds + excluded.cpu_system_seconds, "
           "peak_rss_bytes = max(peak_rss_bytes, excluded.peak_rss_bytes), "
           "device = excluded.device, "
           "processes = max(processes, excluded.processes)");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id)
        .Bind(2, u.wall_seconds)
        .Bind(3, u.cpu_user_seconds)
        .Bind(4, u.cpu_system_seconds)
        .Bind(5, u.peak_rss_bytes)
        .Bind(6, u.device)
        .Bind(7, static_cast<int64_t>(u.processes));
    return s.Run();
  });
}

namespace {
RunRecord ReadRunRow(Stmt& s) {
  RunRecord r;
  r.id = s.Int(0);
  r.kind = s.Text(1);
  r.name = s.Text(2);
  r.status = s.Text(3);
  r.config_json = s.Text(4);
  r.error = s.Text(5);
  r.host = s.Text(6);
  r.pid = s.Int(7);
  r.created_at = s.Real(8);
  r.finished_at = s.Real(9);
  if (r.status == "running" && !ProcessAlive(r.host, r.pid)) r.status = "interrupted";
  return r;
}
constexpr const char* kRunColumns =
    "SELECT id, kind, name, status, config_json, error, host, pid, created_at, finished_at FROM "
    "runs";
}  // namespace

Result<RunRecord> RunStore::GetRun(int64_t run_id) {
  MutexLock lock(&mu_);
  RunRecord r;
  {
    Stmt s(db_, (std::string(kRunColumns) + " WHERE id=?").c_str());
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return NotFound("run " + std::to_string(run_id) + " not found in " + path_);
    r = ReadRunRow(s);
  }
  {
    Stmt s(db_, "SELECT step, split, name, value FROM metrics WHERE run_id=? ORDER BY rowid");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      r.metrics.push_back({s.Int(0), s.Text(1), s.Text(2), s.Real(3)});
    }
  }
  {
    Stmt s(db_, "SELECT kind, path, sha256, bytes FROM artifacts WHERE run_id=? ORDER BY rowid");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      r.artifacts.push_back({s.Text(0), s.Text(1), s.Text(2), s.Int(3)});
    }
  }
  {
    Stmt s(db_,
           "SELECT wall_seconds, cpu_user_seconds, cpu_system_seconds, peak_rss_bytes, device, "
           "processes FROM resources WHERE run_id=?");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, run_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      ResourceUsage u;
      u.wall_seconds = s.Real(0);
      u.cpu_user_seconds = s.Real(1);
      u.cpu_system_seconds = s.Real(2);
      u.peak_rss_bytes = s.Int(3);
      u.device = s.Text(4);
      u.processes = static_cast<int>(s.Int(5));
      r.resources = u;
    }
  }
  return r;
}

Result<std::vector<RunRecord>> RunStore::ListRuns(int limit, const std::string& kind) {
  std::vector<int64_t> ids;
  {
    MutexLock lock(&mu_);
    std::string sql = "SELECT id FROM runs";
    if (!kind.empty()) sql += " WHERE kind=?";
    sql += " ORDER BY id DESC LIMIT ?";
    Stmt s(db_, sql.c_str());
    RETURN_IF_PREPARE_ERROR(s);
    int i = 1;
    if (!kind.empty()) s.Bind(i++, kind);
    s.Bind(i, static_cast<int64_t>(limit));
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ids.push_back(s.Int(0));
    }
  }
  std::vector<RunRecord> out;
  for (int64_t id : ids) {
    ASSIGN_OR_RETURN(RunRecord r, GetRun(id));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::unique_ptr<Job>> Job::Start(RunStore* store, const std::string& kind,
                                        const std::string& name, const std::string& config_json,
                                        const std::string& device) {
  ASSIGN_OR_RETURN(int64_t id, store->CreateRun(kind, name, config_json));
  return std::unique_ptr<Job>(new Job(store, id, device));
}

Result<std::unique_ptr<Job>> Job::Resume(RunStore* store, int64_t run_id,
                                         const std::string& device) {
  RETURN_IF_ERROR(store->ReopenRun(run_id));
  return std::unique_ptr<Job>(new Job(store, run_id, device));
}

Job::~Job() {
  if (!finished_) (void)Finish(Internal("job ended without a final status"));
}

Status Job::Metrics(const std::vector<MetricRecord>& metrics) {
  return store_->LogMetrics(id_, metrics);
}

Status Job::Artifact(const ArtifactRecord& artifact) { return store_->AddArtifact(id_, artifact); }

Status Job::Finish(const Status& outcome) {
  if (finished_) return Status::OK();
  finished_ = true;
  ResourceUsage u = meter_.Read();
  if (has_external_) u.Merge(external_);
  RETURN_IF_ERROR(store_->RecordResources(id_, u));
  // Cancelled: stopped on purpose (a signal) and resumable, like a run whose process died.
  const char* status = outcome.ok()                               ? "succeeded"
                       : outcome.code() == StatusCode::kCancelled ? "interrupted"
                                                                  : "failed";
  return store_->FinishRun(id_, status, outcome.ok() ? "" : outcome.message());
}

std::string HomeStorePath(const std::string& home) { return home + "/ronghe.db"; }

Result<std::unique_ptr<RunStore>> OpenHomeStore(const std::string& home,
                                                const StoreOptions& options) {
  RETURN_IF_ERROR(MakeDirs(home, 0700));
  return RunStore::Open(HomeStorePath(home), options);
}

}  // namespace ronghe::store
