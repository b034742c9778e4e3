// The run store: one SQLite database ($RONGHE_HOME/ronghe.db, WAL mode) recording every job that
// ronghe runs - its config, status, per-epoch metrics, artifacts and resource use. Every job type
// (training, evaluation, federated rounds, serving sessions, ...) records through Job (below), so
// the cost explorer can read one table for all of them.
//
// Concurrency: any number of processes may open the same database; writes are short IMMEDIATE
// transactions with a busy timeout, so concurrent writers queue instead of failing or losing rows.
// Within a process a RunStore is thread-safe (one connection behind a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/resource.h"
#include "ronghe/base/status.h"

struct sqlite3;

namespace ronghe::store {

struct StoreOptions {
  int busy_timeout_ms = 30000;  // Default: 30 s. How long a writer waits for another's lock.
};

struct MetricRecord {
  int64_t step = 0;   // epoch number (or round number for federated jobs)
  std::string split;  // "train", "val", "test", ...
  std::string name;   // "loss", "accuracy", "roc_auc", ...
  double value = 0;
};

struct ArtifactRecord {
  std::string kind;  // "model", "checkpoint", ...
  std::string path;
  std::string sha256;
  int64_t bytes = 0;
};

// A job's resumable state at one step (a federated round): an opaque blob plus JSON metadata.
struct CheckpointRecord {
  int64_t step = 0;
  std::string state;  // binary (e.g. a tensor file)
  std::string meta_json;
};

struct RunRecord {
  int64_t id = 0;
  std::string kind;  // "train", "eval", ...
  std::string name;
  std::string status;  // "running", "succeeded", "failed", "interrupted"
  std::string config_json;
  std::string error;
  std::string host;
  int64_t pid = 0;
  double created_at = 0;   // unix seconds
  double finished_at = 0;  // 0 while running
  std::optional<ResourceUsage> resources;
  std::vector<MetricRecord> metrics;
  std::vector<ArtifactRecord> artifacts;
};

class RunStore {
 public:
  // Opens (creating if needed) the database and migrates its schema forward. A database written
  // by a newer ronghe is refused rather than touched.
  static Result<std::unique_ptr<RunStore>> Open(const std::string& path,
                                                const StoreOptions& options = {});
  ~RunStore();
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  static int LatestSchemaVersion();
  Result<int> SchemaVersion();

  Result<int64_t> CreateRun(const std::string& kind, const std::string& name,
                            const std::string& config_json);
  // Marks a run as running again (a resumed job) under this process.
  Status ReopenRun(int64_t run_id);
  Status FinishRun(int64_t run_id, const std::string& status, const std::string& error = "");
  // A metric logged again for the same (step, split, name) replaces the earlier value.
  Status LogMetrics(int64_t run_id, const std::vector<MetricRecord>& metrics);
  Status AddArtifact(int64_t run_id, const ArtifactRecord& artifact);
  // Stores the checkpoint for `cp.step` and that step's metrics in ONE transaction, so a crash
  // leaves either both or neither. Keeps the newest `keep` checkpoints of the run (0 = all).
  Status SaveCheckpoint(int64_t run_id, const CheckpointRecord& cp,
                        const std::vector<MetricRecord>& metrics, int keep = 1);
  // The checkpoint of one step, if it was kept.
  Result<std::optional<CheckpointRecord>> GetCheckpoint(int64_t run_id, int64_t step);
  // The newest checkpoint of the run, if any.
  Result<std::optional<CheckpointRecord>> LatestCheckpoint(int64_t run_id);
  // Adds to the run's recorded use (a resumed run accumulates over its attempts).
  Status RecordResources(int64_t run_id, const ResourceUsage& usage);

  // A run left "running" by a process that no longer exists reads as "interrupted".
  Result<RunRecord> GetRun(int64_t run_id);
  Result<std::vector<RunRecord>> ListRuns(int limit = 50, const std::string& kind = "");

  const std::string& path() const { return path_; }

 private:
  RunStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Status Migrate() EXCLUDES(mu_);
  Status Exec(const std::string& sql) REQUIRES(mu_);
  Status LogMetricsLocked(int64_t run_id, const std::vector<MetricRecord>& metrics) REQUIRES(mu_);
  // Runs `fn` inside BEGIN IMMEDIATE ... COMMIT, rolling back on error.
  template <typename Fn>
  Status InTransaction(Fn&& fn) REQUIRES(mu_);

  Mutex mu_;
  sqlite3* const db_ GUARDED_BY(mu_);  // owned
  std::string path_;
};

// The home's database, HOME/ronghe.db: every command, server and test that records opens it
// through these two, so its name is spelled once.
std::string HomeStorePath(const std::string& home);
// Opens (creating HOME with mode 0700 when missing) the home's store.
Result<std::unique_ptr<RunStore>> OpenHomeStore(const std::string& home,
                                                const StoreOptions& options = {});

// One job's record, from start to finish. Measures resource use from Start() and writes it,
// with the final status, in Finish(). A Job destroyed without Finish() records "failed".
//
//   ASSIGN_OR_RETURN(auto job, Job::Start(store, "train", "fashion-cnn", cfg.ToJson()));
//   job->Metrics({{epoch, "val", "accuracy", acc}});
//   job->Finish(status);
class Job {
 public:
  static Result<std::unique_ptr<Job>> Start(RunStore* store, const std::string& kind,
                                            const std::string& name, const std::string& config_json,
                                            const std::string& device = "cpu");
  // Continues an existing run (resume after a crash).
  static Result<std::unique_ptr<Job>> Resume(RunStore* store, int64_t run_id,
                                             const std::string& device = "cpu");
  ~Job();

  int64_t id() const { return id_; }
  Status Metrics(const std::vector<MetricRecord>& metrics);
  Status Artifact(const ArtifactRecord& artifact);
  // Resource use of other processes of this job (e.g. worker ranks), added at Finish().
  void AddExternalUsage(const ResourceUsage& usage) {
    external_.Merge(usage);
    has_external_ = true;
  }
  // Records status "succeeded" for OK, otherwise "failed" with the message. Idempotent.
  Status Finish(const Status& outcome);

 private:
  Job(RunStore* store, int64_t id, const std::string& device)
      : store_(store), id_(id), meter_(device) {}
  RunStore* store_;
  int64_t id_;
  ResourceMeter meter_;
  ResourceUsage external_{0, 0, 0, 0, "", 0};
  bool has_external_ = false;
  bool finished_ = false;
};

}  // namespace ronghe::store
