#include "ronghe/store/experiment_store.h"

#include <chrono>

#include "ronghe/store/sqlite.h"

namespace ronghe::store {

using internal::Stmt;

namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Result<std::unique_ptr<ExperimentStore>> ExperimentStore::Open(const std::string& path,
                                                               const StoreOptions& options) {
  {
    // Creates or migrates the schema: the experiment tables are the run store's.
    ASSIGN_OR_RETURN(auto runs, RunStore::Open(path, options));
  }
  ASSIGN_OR_RETURN(sqlite3 * db,
                   internal::OpenDatabase(path, options.busy_timeout_ms, /*create=*/false));
  return std::unique_ptr<ExperimentStore>(new ExperimentStore(db, path));
}

ExperimentStore::~ExperimentStore() { sqlite3_close(db_); }

Status ExperimentStore::Upsert(const ExperimentRecord& e) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "INSERT INTO experiments(name, model, variants_json, weights_json, sticky_key, status, "
         "created_at) "
         "VALUES (?, ?, ?, ?, ?, 'running', ?) ON CONFLICT(name) DO UPDATE SET "
         "model = excluded.model, variants_json = excluded.variants_json, "
         "weights_json = excluded.weights_json, sticky_key = excluded.sticky_key");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, e.name)
      .Bind(2, e.model)
      .Bind(3, e.variants_json)
      .Bind(4, e.weights_json)
      .Bind(5, e.sticky_key)
      .Bind(6, UnixNow());
  return s.Run().WithContext(path_);
}

Status ExperimentStore::AddRequests(const std::vector<ExperimentRequestRecord>& rows) {
  if (rows.empty()) return Status::OK();
  MutexLock l(&mu_);
  return internal::InTransaction(db_,
                                 [&]() -> Status {
                                   mu_.AssertHeld();
                                   Stmt s(db_,
                                          "INSERT INTO experiment_requests(experiment, request_id, "
                                          "variant, latency_us, ok, recorded_at) "
                                          "VALUES (?, ?, ?, ?, ?, ?)");
                                   RETURN_IF_PREPARE_ERROR(s);
                                   for (const auto& r : rows) {
                                     s.Bind(1, r.experiment)
                                         .Bind(2, r.request_id)
                                         .Bind(3, r.variant)
                                         .Bind(4, r.latency_us)
                                         .Bind(5, static_cast<int64_t>(r.ok))
                                         .Bind(6, r.recorded_at);
                                     RETURN_IF_ERROR(s.Run());
                                     s.Reset();
                                   }
                                   return Status::OK();
                                 })
      .WithContext(path_);
}

Status ExperimentStore::AddFeedback(const std::string& experiment, const std::string& request_id,
                                    double outcome) {
  MutexLock l(&mu_);
  {
    Stmt s(db_,
           "SELECT 1 FROM experiment_requests WHERE experiment = ? AND request_id = ? LIMIT 1");
    RETURN_IF_PREPARE_ERROR(s);
    s.Bind(1, experiment).Bind(2, request_id);
    ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) {
      return NotFound("experiment '" + experiment + "' has no request with id '" +
                      request_id.substr(0, 128) + "'");
    }
  }
  Stmt s(db_,
         "INSERT OR REPLACE INTO experiment_feedback(experiment, request_id, outcome, recorded_at) "
         "VALUES (?, ?, ?, ?)");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, experiment).Bind(2, request_id).Bind(3, outcome).Bind(4, UnixNow());
  return s.Run().WithContext(path_);
}

Status ExperimentStore::Decide(const std::string& name, const std::string& status,
                               const std::string& variant) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "UPDATE experiments SET status = ?, decided_variant = ?, decided_at = ? WHERE name = ?");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, status).Bind(2, variant).Bind(3, UnixNow()).Bind(4, name);
  RETURN_IF_ERROR(s.Run().WithContext(path_));
  if (sqlite3_changes(db_) == 0) return NotFound("no experiment '" + name + "'");
  return Status::OK();
}

Result<std::map<std::string, std::string>> ExperimentStore::Decisions() {
  MutexLock l(&mu_);
  std::map<std::string, std::string> d;
  Stmt s(db_, "SELECT name, decided_variant FROM experiments WHERE status != 'running'");
  RETURN_IF_PREPARE_ERROR(s);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    d[s.Text(0)] = s.Text(1);
  }
  return d;
}

Result<std::vector<std::string>> ExperimentStore::Names() {
  MutexLock l(&mu_);
  std::vector<std::string> out;
  Stmt s(db_, "SELECT name FROM experiments ORDER BY created_at");
  RETURN_IF_PREPARE_ERROR(s);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(s.Text(0));
  }
  return out;
}

Result<ExperimentRecord> ExperimentStore::Get(const std::string& name) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "SELECT model, variants_json, weights_json, sticky_key, status, decided_variant FROM "
         "experiments "
         "WHERE name = ?");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NotFound("no experiment '" + name.substr(0, 128) + "'");
  return ExperimentRecord{name, s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5)};
}

Result<std::vector<ExperimentRequestRecord>> ExperimentStore::Requests(const std::string& name) {
  MutexLock l(&mu_);
  std::vector<ExperimentRequestRecord> out;
  Stmt s(
      db_,
      "SELECT variant, latency_us, ok, recorded_at FROM experiment_requests WHERE experiment = ?");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, name);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({"", s.Text(0), "", s.Int(1), s.Int(2) != 0, s.Real(3)});
  }
  return out;
}

Result<std::vector<ExperimentOutcome>> ExperimentStore::Outcomes(const std::string& name) {
  MutexLock l(&mu_);
  std::vector<ExperimentOutcome> out;
  Stmt s(db_,
         "SELECT r.variant, f.outcome FROM experiment_feedback f JOIN experiment_requests r "
         "ON r.experiment = f.experiment AND r.request_id = f.request_id WHERE f.experiment = ?");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, name);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.Text(0), s.Real(1)});
  }
  return out;
}

}  // namespace ronghe::store
