#include "ronghe/store/stream_store.h"

#include <algorithm>
#include <chrono>

#include "ronghe/store/sqlite.h"

namespace ronghe::store {

using internal::Stmt;

namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr const char* kReviewColumns =
    "id, model, line, source, seq, frame_time, height, width, pixels, predicted, confidence, "
    "score, model_version, truth, label, flagged_at, labelled_at";

ReviewFrame ReadReview(Stmt& s) {
  ReviewFrame f;
  f.id = s.Int(0);
  f.model = s.Text(1);
  f.line = s.Text(2);
  f.source = s.Text(3);
  f.seq = s.Int(4);
  f.frame_time = s.Real(5);
  f.height = s.Int(6);
  f.width = s.Int(7);
  f.pixels = s.Blob(8);
  f.predicted = s.Text(9);
  f.confidence = s.Real(10);
  f.score = s.Real(11);
  f.model_version = s.Int(12);
  f.truth = s.Text(13);
  f.label = s.Text(14);
  f.flagged_at = s.Real(15);
  f.labelled_at = s.Real(16);
  return f;
}

}  // namespace

Result<std::unique_ptr<StreamStore>> StreamStore::Open(const std::string& path,
                                                       const StoreOptions& options) {
  {
    // Creates or migrates the schema: the stream tables are the run store's.
    ASSIGN_OR_RETURN(auto runs, RunStore::Open(path, options));
  }
  ASSIGN_OR_RETURN(sqlite3 * db,
                   internal::OpenDatabase(path, options.busy_timeout_ms, /*create=*/false));
  return std::unique_ptr<StreamStore>(new StreamStore(db, path));
}

StreamStore::~StreamStore() { sqlite3_close(db_); }

Status StreamStore::AddEvents(const std::vector<StreamEvent>& events) {
  if (events.empty()) return Status::OK();
  MutexLock l(&mu_);
  return internal::InTransaction(
             db_,
             [&]() -> Status {
               mu_.AssertHeld();
               Stmt s(db_,
                      "INSERT INTO stream_events(line, source, seq, frame_time, class, confidence, "
                      "score, flagged, latency_ms, model_version, decided_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
               RETURN_IF_PREPARE_ERROR(s);
               for (const auto& e : events) {
                 s.Bind(1, e.line)
                     .Bind(2, e.source)
                     .Bind(3, e.seq)
                     .Bind(4, e.frame_time)
                     .Bind(5, e.cls)
                     .Bind(6, e.confidence)
                     .Bind(7, e.score)
                     .Bind(8, static_cast<int64_t>(e.flagged))
                     .Bind(9, e.latency_ms)
                     .Bind(10, e.model_version)
                     .Bind(11, e.decided_at);
                 RETURN_IF_ERROR(s.Run());
                 s.Reset();
               }
               return Status::OK();
             })
      .WithContext(path_);
}

Result<std::vector<StreamEvent>> StreamStore::Events(const std::string& line, int64_t limit) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "SELECT line, source, seq, frame_time, class, confidence, score, flagged, latency_ms, "
         "model_version, decided_at FROM stream_events WHERE (? = '' OR line = ?) "
         "ORDER BY rowid LIMIT ?");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, line).Bind(2, line).Bind(3, limit);
  std::vector<StreamEvent> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.Text(0), s.Text(1), s.Int(2), s.Real(3), s.Text(4), s.Real(5), s.Real(6),
                   s.Int(7) != 0, s.Real(8), s.Int(9), s.Real(10)});
  }
  return out;
}

Result<int64_t> StreamStore::CountEvents(const std::string& line) {
  MutexLock l(&mu_);
  Stmt s(db_, "SELECT COUNT(*) FROM stream_events WHERE (? = '' OR line = ?)");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, line).Bind(2, line);
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Int(0) : 0;
}

Status StreamStore::AddReview(std::vector<ReviewFrame>* frames) {
  if (frames->empty()) return Status::OK();
  MutexLock l(&mu_);
  return internal::InTransaction(
             db_,
             [&]() -> Status {
               mu_.AssertHeld();
               Stmt s(db_,
                      "INSERT INTO stream_review(model, line, source, seq, frame_time, height, "
                      "width, pixels, predicted, confidence, score, model_version, truth, "
                      "flagged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
               RETURN_IF_PREPARE_ERROR(s);
               const double now = UnixNow();
               for (auto& f : *frames) {
                 s.Bind(1, f.model)
                     .Bind(2, f.line)
                     .Bind(3, f.source)
                     .Bind(4, f.seq)
                     .Bind(5, f.frame_time)
                     .Bind(6, f.height)
                     .Bind(7, f.width)
                     .BindBlob(8, f.pixels)
                     .Bind(9, f.predicted)
                     .Bind(10, f.confidence)
                     .Bind(11, f.score)
                     .Bind(12, f.model_version)
                     .Bind(13, f.truth)
                     .Bind(14, f.flagged_at > 0 ? f.flagged_at : now);
                 RETURN_IF_ERROR(s.Run());
                 f.id = sqlite3_last_insert_rowid(db_);
                 s.Reset();
               }
               return Status::OK();
             })
      .WithContext(path_);
}

Result<std::vector<ReviewFrame>> StreamStore::Review(const std::string& model, bool unlabelled_only,
                                                     int64_t limit) {
  MutexLock l(&mu_);
  const std::string sql = std::string("SELECT ") + kReviewColumns +
                          " FROM stream_review WHERE model = ? AND (? = 0 OR label = '') "
                          "ORDER BY id DESC LIMIT ?";
  Stmt s(db_, sql.c_str());
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, model).Bind(2, static_cast<int64_t>(unlabelled_only)).Bind(3, limit);
  std::vector<ReviewFrame> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadReview(s));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

Status StreamStore::Label(const std::vector<int64_t>& ids, const std::string& label) {
  if (label.empty()) return InvalidArgument("an empty label");
  MutexLock l(&mu_);
  return internal::InTransaction(
             db_,
             [&]() -> Status {
               mu_.AssertHeld();
               Stmt s(db_, "UPDATE stream_review SET label = ?, labelled_at = ? WHERE id = ?");
               RETURN_IF_PREPARE_ERROR(s);
               const double now = UnixNow();
               for (int64_t id : ids) {
                 s.Bind(1, label).Bind(2, now).Bind(3, id);
                 RETURN_IF_ERROR(s.Run());
                 if (sqlite3_changes(db_) != 1) {
                   return NotFound("no frame " + std::to_string(id) + " in the review queue");
                 }
                 s.Reset();
               }
               return Status::OK();
             })
      .WithContext(path_);
}

Result<std::vector<ReviewFrame>> StreamStore::Labelled(const std::string& model,
                                                       const std::string& label) {
  MutexLock l(&mu_);
  const std::string sql = std::string("SELECT ") + kReviewColumns +
                          " FROM stream_review WHERE model = ? AND label != '' AND "
                          "(? = '' OR label = ?) ORDER BY labelled_at, id";
  Stmt s(db_, sql.c_str());
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, model).Bind(2, label).Bind(3, label);
  std::vector<ReviewFrame> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadReview(s));
  }
  return out;
}

Result<std::map<std::string, int64_t>> StreamStore::LabelCounts(const std::string& model) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "SELECT label, COUNT(*) FROM stream_review WHERE model = ? AND label != '' "
         "GROUP BY label");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, model);
  std::map<std::string, int64_t> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out[s.Text(0)] = s.Int(1);
  }
  return out;
}

Status StreamStore::PutLine(const LineState& x) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "INSERT INTO stream_lines(line, pid, host, model, version, pinned, frames_in, "
         "frames_decided, frames_dropped, novelty_rate, p99_ms, state, detail, updated_at) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(line) DO UPDATE SET "
         "pid = excluded.pid, host = excluded.host, model = excluded.model, "
         "version = excluded.version, pinned = excluded.pinned, frames_in = excluded.frames_in, "
         "frames_decided = excluded.frames_decided, frames_dropped = excluded.frames_dropped, "
         "novelty_rate = excluded.novelty_rate, p99_ms = excluded.p99_ms, state = excluded.state, "
         "detail = excluded.detail, updated_at = excluded.updated_at");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, x.line)
      .Bind(2, x.pid)
      .Bind(3, x.host)
      .Bind(4, x.model)
      .Bind(5, x.version)
      .Bind(6, static_cast<int64_t>(x.pinned))
      .Bind(7, x.frames_in)
      .Bind(8, x.frames_decided)
      .Bind(9, x.frames_dropped)
      .Bind(10, x.novelty_rate)
      .Bind(11, x.p99_ms)
      .Bind(12, x.state)
      .Bind(13, x.detail)
      .Bind(14, x.updated_at > 0 ? x.updated_at : UnixNow());
  return s.Run().WithContext(path_);
}

Result<std::vector<LineState>> StreamStore::Lines() {
  MutexLock l(&mu_);
  Stmt s(db_,
         "SELECT line, pid, host, model, version, pinned, frames_in, frames_decided, "
         "frames_dropped, novelty_rate, p99_ms, state, detail, updated_at FROM stream_lines "
         "ORDER BY line");
  RETURN_IF_PREPARE_ERROR(s);
  std::vector<LineState> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    LineState x;
    x.line = s.Text(0);
    x.pid = s.Int(1);
    x.host = s.Text(2);
    x.model = s.Text(3);
    x.version = s.Int(4);
    x.pinned = s.Int(5) != 0;
    x.frames_in = s.Int(6);
    x.frames_decided = s.Int(7);
    x.frames_dropped = s.Int(8);
    x.novelty_rate = s.Real(9);
    x.p99_ms = s.Real(10);
    x.state = s.Text(11);
    x.detail = s.Text(12);
    x.updated_at = s.Real(13);
    out.push_back(std::move(x));
  }
  return out;
}

Status StreamStore::AddRelease(Release* r) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "INSERT INTO stream_releases(model, version, new_class, status, detail_json, created_at) "
         "VALUES (?, ?, ?, ?, ?, ?)");
  RETURN_IF_PREPARE_ERROR(s);
  if (r->created_at <= 0) r->created_at = UnixNow();
  s.Bind(1, r->model)
      .Bind(2, r->version)
      .Bind(3, r->new_class)
      .Bind(4, r->status)
      .Bind(5, r->detail_json)
      .Bind(6, r->created_at);
  RETURN_IF_ERROR(s.Run().WithContext(path_));
  r->id = sqlite3_last_insert_rowid(db_);
  return Status::OK();
}

Result<std::vector<Release>> StreamStore::Releases(const std::string& model) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "SELECT id, model, version, new_class, status, detail_json, created_at "
         "FROM stream_releases WHERE (? = '' OR model = ?) ORDER BY id");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, model).Bind(2, model);
  std::vector<Release> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.Int(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4), s.Text(5), s.Real(6)});
  }
  return out;
}

Status StreamStore::AddRollback(const std::string& line, const std::string& model, int64_t version,
                                const std::string& reason) {
  MutexLock l(&mu_);
  Stmt s(db_,
         "INSERT OR REPLACE INTO stream_rollbacks(line, model, version, reason, created_at) "
         "VALUES (?, ?, ?, ?, ?)");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, line).Bind(2, model).Bind(3, version).Bind(4, reason).Bind(5, UnixNow());
  return s.Run().WithContext(path_);
}

Result<std::vector<int64_t>> StreamStore::RolledBack(const std::string& line,
                                                     const std::string& model) {
  MutexLock l(&mu_);
  Stmt s(db_, "SELECT version FROM stream_rollbacks WHERE line = ? AND model = ? ORDER BY version");
  RETURN_IF_PREPARE_ERROR(s);
  s.Bind(1, line).Bind(2, model);
  std::vector<int64_t> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(s.Int(0));
  }
  return out;
}

}  // namespace ronghe::store
