// Child processes: the one place ronghe starts them (posix_spawn) and forks.
//
// Used by the training launcher, the federated demo, `data fetch` and the end-to-end tests, so
// they share one answer to the questions every caller gets wrong alone: which environment the
// child sees, where its output goes, whether it outlives its parent, how to wait with a limit
// and how to tell "exited 3" from "killed by signal 9".
//
//   SpawnOptions o{.argv = {"/bin/echo", "hi"}, .stdout_path = "out.log"};
//   ASSIGN_OR_RETURN(Subprocess p, Subprocess::Spawn(o));
//   ASSIGN_OR_RETURN(ExitStatus e, p.Wait(10));  // DeadlineExceeded after 10 s
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe {

struct SpawnOptions {
  // argv[0] is the program: a path, or a name looked up in PATH when it has no '/'.
  std::vector<std::string> argv;
  // Variables set for the child ("NAME=VALUE"), replacing any inherited one of the same name.
  std::vector<std::string> env;
  // Inherited variables that the child must not see (names only).
  std::vector<std::string> unset_env;
  std::string stdout_path;  // Default: "" = inherit the parent's stdout.
  std::string stderr_path;  // Default: "" = inherit; the same path as stdout = one file.
  bool append = false;      // Default: truncate the output files; true = append.
  int output_mode = 0644;   // Default: 0644. Mode of output files it creates.
};

// How a child ended.
struct ExitStatus {
  int code = 0;    // exit code when !signaled
  int signal = 0;  // the signal that killed it, when signaled
  bool signaled = false;
  bool ok() const { return !signaled && code == 0; }
  // Shell convention: the exit code, or -signal.
  int AsInt() const { return signaled ? -signal : code; }
  // "exited with code 3" / "was killed by signal 9".
  std::string Describe() const;
  static ExitStatus FromWait(int wait_status);
};

class Subprocess {
 public:
  static Result<Subprocess> Spawn(const SpawnOptions& options);
  // Runs `fn` in a forked copy of this process and exits with its return value (without
  // running destructors or atexit handlers). Only for tests that need a second process with
  // this one's state (e.g. several writers on one database); a multithreaded parent must not
  // let `fn` touch locks other threads may hold.
  static Result<Subprocess> Fork(const std::function<int()>& fn);

  Subprocess() = default;
  Subprocess(Subprocess&& o) noexcept : pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }
  Subprocess& operator=(Subprocess&& o) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  // Does not wait or kill: a caller that lets a child outlive it does so on purpose.
  ~Subprocess() = default;

  pid_t pid() const { return pid_; }
  // Its status once it has ended, without blocking; nullopt while it runs.
  std::optional<ExitStatus> Poll();
  // Waits at most `timeout_s` (< 0 = without limit); DeadlineExceeded when still running.
  Result<ExitStatus> Wait(double timeout_s = -1);
  // Sends `sig` unless the child has already been reaped.
  void Signal(int sig);
  // SIGKILL and reap.
  void Kill();

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
};

// Reaps whichever child of this process ends first, waiting at most `timeout_s`; nullopt when
// none ended in time. For callers that watch many children (the launcher).
std::optional<std::pair<pid_t, ExitStatus>> WaitAnyChild(double timeout_s);

// In a child: ask the kernel to send `sig` when the parent dies, and fail at once if the parent
// `expected_parent` is already gone (the race between fork and prctl).
Status DieWithParent(int sig, pid_t expected_parent);

}  // namespace ronghe
