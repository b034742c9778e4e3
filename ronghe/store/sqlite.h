// The store's one SQLite layer: a connection opened one way (busy timeout, WAL, foreign keys)
// and one prepared-statement wrapper. Internal to ronghe/store: no other module includes
// <sqlite3.h>; modules get tables through the store's typed APIs (run_store.h,
// experiment_store.h, ...).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "ronghe/base/status.h"

namespace ronghe::store::internal {

// Opens (creating when `create`) the database at `path`, in WAL mode with synchronous=NORMAL and
// foreign keys on; waits up to `busy_timeout_ms` for other processes' locks. A file that is not a
// SQLite database is DataLoss naming `path`.
Result<sqlite3*> OpenDatabase(const std::string& path, int busy_timeout_ms, bool create);

// Runs one or more statements without results.
Status Exec(sqlite3* db, const std::string& sql);

// Runs `fn` inside BEGIN IMMEDIATE ... COMMIT, rolling back on error.
template <typename Fn>
Status InTransaction(sqlite3* db, Fn&& fn) {
  RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  Status st = fn();
  if (!st.ok()) {
    (void)Exec(db, "ROLLBACK");
    return st;
  }
  st = Exec(db, "COMMIT");
  if (!st.ok()) (void)Exec(db, "ROLLBACK");
  return st;
}

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status status() const {
    return rc_ == SQLITE_OK ? Status::OK()
                            : Internal(std::string("sqlite prepare: ") + sqlite3_errmsg(db_));
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false, else error.
  Result<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Unavailable(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  Status Run() {
    auto r = Step();
    return r.ok() ? Status::OK() : r.status();
  }
  // Ready for the next row of bindings.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  sqlite3_stmt* get() { return stmt_; }
  int64_t Int(int c) { return sqlite3_column_int64(stmt_, c); }
  double Real(int c) { return sqlite3_column_double(stmt_, c); }
  std::string Text(int c) {
    auto* t = sqlite3_column_text(stmt_, c);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  std::string Blob(int c) {
    const void* b = sqlite3_column_blob(stmt_, c);
    return b ? std::string(static_cast<const char*>(b),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, c)))
             : "";
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

#define RETURN_IF_PREPARE_ERROR(stmt) RETURN_IF_ERROR((stmt).status())

}  // namespace ronghe::store::internal
