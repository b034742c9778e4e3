// Status and Result<T>: errors as values at module boundaries (abseil / LevelDB style).
//
// A Status carries a code and a one-line message that names what is wrong and where
// ("examples/x.toml: train.lr: expected a float, got a string"). Context is prepended as an
// error travels up: st.WithContext("loading model.rhm").
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ronghe {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad flag, config key or value: the caller's input is wrong
  kNotFound,         // a file, run, model or data set does not exist
  kAlreadyExists,
  kFailedPrecondition,  // the system is not in a state to do this (e.g. data not fetched)
  kDataLoss,            // a file is corrupt, truncated or tampered with
  kIoError,             // the OS refused a read or write
  kUnavailable,         // a peer or resource is (perhaps transiently) unreachable
  kDeadlineExceeded,
  kPermissionDenied,
  kResourceExhausted,
  kCancelled,
  kInternal,  // a bug or an unexpected library failure
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "message" for errors, "OK" for success.
  std::string ToString() const { return ok() ? "OK" : message_; }

  // Returns a copy whose message is "context: message". OK stays OK.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<Status, T> v_;
};

// An exception that escaped to a boundary (a command, an RPC handler) as Internal: "unexpected
// error: <first line of what()>". LibTorch's c10::Error appends its C++ backtrace after the first
// line; the boundary reports one line and the process lives on.
Status StatusFromCurrentException();

// Runs `fn` (returning a Status) and turns any exception it throws into
// StatusFromCurrentException(), for the outermost layer of a command or a handler.
template <typename Fn>
Status CatchAll(Fn&& fn) {
  try {
    return fn();
  } catch (...) {
    return StatusFromCurrentException();
  }
}

}  // namespace ronghe

#define RONGHE_CONCAT_INNER_(a, b) a##b
#define RONGHE_CONCAT_(a, b) RONGHE_CONCAT_INNER_(a, b)

// Returns from the current function when `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)      \
  do {                             \
    ::ronghe::Status _st = (expr); \
    if (!_st.ok()) return _st;     \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MakeX()): declares x from a Result or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(RONGHE_CONCAT_(_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()
