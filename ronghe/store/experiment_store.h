// The inference server's A/B experiments in the run store's database (schema migration 3):
// each experiment's definition and decision, every answered request of it, and the outcome
// labels fed back for them. The statistics and the verdict live in ronghe/serve/experiment.h;
// this is only their storage, so that all SQL stays in ronghe/store.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"
#include "ronghe/store/run_store.h"

struct sqlite3;

namespace ronghe::store {

struct ExperimentRecord {
  std::string name, model;
  std::string variants_json, weights_json;  // JSON arrays, as the server's config gave them
  std::string sticky_key;
  std::string status;           // "running", "promoted", "rolled_back"
  std::string decided_variant;  // "" while running
};

struct ExperimentRequestRecord {
  std::string experiment, variant, request_id;
  int64_t latency_us = 0;
  bool ok = true;
  double recorded_at = 0;  // unix seconds
};

// One labelled request: its variant and the outcome fed back.
struct ExperimentOutcome {
  std::string variant;
  double outcome = 0;
};

class ExperimentStore {
 public:
  // Opens the database at `path` (a run store, created and migrated when needed) on a
  // connection of its own.
  static Result<std::unique_ptr<ExperimentStore>> Open(const std::string& path,
                                                       const StoreOptions& options = {});
  ~ExperimentStore();
  ExperimentStore(const ExperimentStore&) = delete;
  ExperimentStore& operator=(const ExperimentStore&) = delete;

  // Creates the experiment, or updates its definition keeping its decision.
  Status Upsert(const ExperimentRecord& e);
  // Appends answered requests in one transaction.
  Status AddRequests(const std::vector<ExperimentRequestRecord>& rows);
  // An outcome label for an earlier request; NotFound when the experiment has no such request.
  // A second label for the same request replaces the first.
  Status AddFeedback(const std::string& experiment, const std::string& request_id, double outcome);
  // Ends the experiment with `status`, sending all traffic to `variant`; NotFound when unknown.
  Status Decide(const std::string& name, const std::string& status, const std::string& variant);
  // experiment -> decided variant, for the experiments no longer running.
  Result<std::map<std::string, std::string>> Decisions();
  // Names, oldest first.
  Result<std::vector<std::string>> Names();
  Result<ExperimentRecord> Get(const std::string& name);
  // Every recorded request of the experiment (experiment and request_id left empty).
  Result<std::vector<ExperimentRequestRecord>> Requests(const std::string& name);
  Result<std::vector<ExperimentOutcome>> Outcomes(const std::string& name);

  const std::string& path() const { return path_; }

 private:
  ExperimentStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Mutex mu_;  // one statement at a time on the connection
  sqlite3* const db_ GUARDED_BY(mu_);
  const std::string path_;
};

}  // namespace ronghe::store
