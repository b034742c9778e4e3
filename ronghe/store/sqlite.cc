#include "ronghe/store/sqlite.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace ronghe::store::internal {

Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return Unavailable("sqlite: " + msg);
  }
  return Status::OK();
}

Result<sqlite3*> OpenDatabase(const std::string& path, int busy_timeout_ms, bool create) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return IoError(path + ": cannot open run store: " + why);
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  // journal_mode=WAL is persistent; switching a new database to it needs a moment of exclusivity.
  // When several processes open a new database at once, SQLite sees two readers each wanting the
  // exclusive lock as a deadlock and answers SQLITE_BUSY at once, without calling the busy
  // handler, so the switch is retried here with backoff, bounded by the same busy timeout.
  Status st = Exec(db, "PRAGMA journal_mode=WAL");
  for (int waited_ms = 0, pause_ms = 1;
       !st.ok() && sqlite3_errcode(db) == SQLITE_BUSY && waited_ms < busy_timeout_ms;
       waited_ms += pause_ms, pause_ms = std::min(pause_ms * 2, 50)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    st = Exec(db, "PRAGMA journal_mode=WAL");
  }
  if (st.ok()) st = Exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  if (!st.ok()) {
    sqlite3_close(db);
    if (st.message().find("not a database") != std::string::npos ||
        st.message().find("malformed") != std::string::npos) {
      return DataLoss(path + ": not a ronghe run store (or corrupt): " + st.message());
    }
    return st.WithContext(path);
  }
  return db;
}

}  // namespace ronghe::store::internal
