#include "ronghe/base/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

extern char** environ;

namespace ronghe {

namespace {

using Clock = std::chrono::steady_clock;

std::string VarName(const std::string& assignment) {
  return assignment.substr(0, assignment.find('='));
}

// Polling period of timed waits: short against process lifetimes, long against a busy loop.
constexpr auto kPollPeriod = std::chrono::milliseconds(10);

}  // namespace

std::string ExitStatus::Describe() const {
  if (signaled) return "was killed by signal " + std::to_string(signal);
  return "exited with code " + std::to_string(code);
}

ExitStatus ExitStatus::FromWait(int st) {
  ExitStatus e;
  if (WIFSIGNALED(st)) {
    e.signaled = true;
    e.signal = WTERMSIG(st);
  } else if (WIFEXITED(st)) {
    e.code = WEXITSTATUS(st);
  } else {
    e.code = 1;
  }
  return e;
}

Subprocess& Subprocess::operator=(Subprocess&& o) noexcept {
  pid_ = o.pid_;
  status_ = o.status_;
  o.pid_ = -1;
  return *this;
}

Result<Subprocess> Subprocess::Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return InvalidArgument("spawn: no program given");
  std::vector<std::string> args = o.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    std::string name = VarName(*e);
    bool drop = false;
    for (const auto& u : o.unset_env) drop = drop || u == name;
    for (const auto& s : o.env) drop = drop || VarName(s) == name;
    if (!drop) env_store.emplace_back(*e);
  }
  env_store.insert(env_store.end(), o.env.begin(), o.env.end());
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const int flags = O_WRONLY | O_CREAT | (o.append ? O_APPEND : O_TRUNC);
  if (!o.stdout_path.empty())
    posix_spawn_file_actions_addopen(&fa, 1, o.stdout_path.c_str(), flags, o.output_mode);
  if (!o.stderr_path.empty()) {
    if (o.stderr_path == o.stdout_path) {
      posix_spawn_file_actions_adddup2(&fa, 1, 2);
    } else {
      posix_spawn_file_actions_addopen(&fa, 2, o.stderr_path.c_str(), flags, o.output_mode);
    }
  }
  pid_t pid = -1;
  const bool search = o.argv[0].find('/') == std::string::npos;
  int rc = search ? posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), envp.data())
                  : posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Unavailable("cannot start " + o.argv[0] + ": " + std::strerror(rc));
  return Subprocess(pid);
}

Result<Subprocess> Subprocess::Fork(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid < 0) return Unavailable(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) _exit(fn());
  return Subprocess(pid);
}

std::optional<ExitStatus> Subprocess::Poll() {
  if (status_ || pid_ <= 0) return status_;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) status_ = ExitStatus::FromWait(st);
  return status_;
}

Result<ExitStatus> Subprocess::Wait(double timeout_s) {
  if (pid_ <= 0) return FailedPrecondition("wait: no process");
  if (timeout_s < 0) {
    while (!status_) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, 0);
      if (r == pid_)
        status_ = ExitStatus::FromWait(st);
      else if (r < 0 && errno != EINTR)
        return Internal("waitpid " + std::to_string(pid_) + ": " + std::strerror(errno));
    }
    return *status_;
  }
  const auto until =
      Clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  while (!Poll()) {
    if (Clock::now() >= until)
      return DeadlineExceeded("process " + std::to_string(pid_) + " still running");
    std::this_thread::sleep_for(kPollPeriod);
  }
  return *status_;
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !Poll()) ::kill(pid_, sig);
}

void Subprocess::Kill() {
  if (pid_ <= 0 || Poll()) return;
  ::kill(pid_, SIGKILL);
  (void)Wait();
}

std::optional<std::pair<pid_t, ExitStatus>> WaitAnyChild(double timeout_s) {
  const auto until =
      Clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  while (true) {
    int st = 0;
    pid_t r = ::waitpid(-1, &st, WNOHANG);
    if (r > 0) return std::make_pair(r, ExitStatus::FromWait(st));
    if (r < 0 && errno == ECHILD) return std::nullopt;
    if (Clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(kPollPeriod);
  }
}

Status DieWithParent(int sig, pid_t expected_parent) {
  prctl(PR_SET_PDEATHSIG, sig);
  if (::getppid() != expected_parent) {
    return Unavailable("the parent process (pid " + std::to_string(expected_parent) + ") is gone");
  }
  return Status::OK();
}

}  // namespace ronghe
