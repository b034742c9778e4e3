// Streaming inspection's tables in the run store's database (schema migration 4): decisions per
// frame, the review queue of frames flagged as novel with their labels, each production line's
// last reported state, the adaptation jobs' releases and the lines' rollbacks. The pipeline, the
// novelty detector and the adaptation live in ronghe/stream; this is only their storage.
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

struct StreamEvent {
  std::string line, source;
  int64_t seq = 0;
  double frame_time = 0;  // seconds of the source's own clock (media time or replay time)
  std::string cls;        // decided class
  double confidence = 0;  // softmax probability of cls
  double score = 0;       // novelty score (higher = less like any known class)
  bool flagged = false;   // novel: sent to review
  double latency_ms = 0;  // capture to decision
  int64_t model_version = 0;
  double decided_at = 0;  // unix seconds
};

struct ReviewFrame {
  int64_t id = 0;
  std::string model, line, source;
  int64_t seq = 0;
  double frame_time = 0;
  int64_t height = 0, width = 0;
  std::string pixels;  // grey, row-major, height x width bytes
  std::string predicted;
  double confidence = 0, score = 0;  // score: novelty
  int64_t model_version = 0;
  std::string truth;  // the source's own label where it has one (replayed data sets); else ""
  std::string label;  // "" until labelled
  double flagged_at = 0, labelled_at = 0;
};

struct LineState {
  std::string line;
  int64_t pid = 0;
  std::string host, model;
  int64_t version = 0;
  bool pinned = false;  // rolled back: held on `version` instead of following the latest
  int64_t frames_in = 0, frames_decided = 0, frames_dropped = 0;
  double novelty_rate = 0, p99_ms = 0;
  std::string state;  // "running", "stopped", "failed"
  std::string detail;
  double updated_at = 0;
};

struct Release {
  int64_t id = 0;
  std::string model;
  int64_t version = 0;
  std::string new_class;
  std::string status;  // "released", "refused"
  std::string detail_json;
  double created_at = 0;
};

class StreamStore {
 public:
  // Opens the database at `path` (a run store, created and migrated when needed) on a
  // connection of its own.
  static Result<std::unique_ptr<StreamStore>> Open(const std::string& path,
                                                   const StoreOptions& options = {});
  ~StreamStore();
  StreamStore(const StreamStore&) = delete;
  StreamStore& operator=(const StreamStore&) = delete;

  // Appends decisions in one transaction.
  Status AddEvents(const std::vector<StreamEvent>& events);
  // Decisions of `line` ("" = all lines), oldest first, at most `limit`.
  Result<std::vector<StreamEvent>> Events(const std::string& line, int64_t limit);
  Result<int64_t> CountEvents(const std::string& line);

  // Adds flagged frames to the review queue (ids filled in).
  Status AddReview(std::vector<ReviewFrame>* frames);
  // Frames of `model` in the queue: unlabelled only, or all; newest last; at most `limit`.
  Result<std::vector<ReviewFrame>> Review(const std::string& model, bool unlabelled_only,
                                          int64_t limit);
  // Labels frames; NotFound naming the first id that is not in the queue (none labelled then).
  Status Label(const std::vector<int64_t>& ids, const std::string& label);
  // Labelled frames of `model` with `label` ("" = every label), oldest label first.
  Result<std::vector<ReviewFrame>> Labelled(const std::string& model, const std::string& label);
  // label -> count of labelled frames of `model`.
  Result<std::map<std::string, int64_t>> LabelCounts(const std::string& model);

  Status PutLine(const LineState& s);
  Result<std::vector<LineState>> Lines();

  Status AddRelease(Release* r);
  Result<std::vector<Release>> Releases(const std::string& model);

  // A line's rollback from `version` of `model`: the line stays off that version until a newer
  // one is released.
  Status AddRollback(const std::string& line, const std::string& model, int64_t version,
                     const std::string& reason);
  Result<std::vector<int64_t>> RolledBack(const std::string& line, const std::string& model);

  const std::string& path() const { return path_; }

 private:
  StreamStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Mutex mu_;  // one statement at a time on the connection
  sqlite3* const db_ GUARDED_BY(mu_);
  const std::string path_;
};

}  // namespace ronghe::store
