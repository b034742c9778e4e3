#include "ronghe/cli/launch.h"

#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

extern char** environ;

namespace ronghe::cli {

namespace {

Result<int> EnvInt(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return InvalidArgument(std::string(name) + " is not set");
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1 << 20) return InvalidArgument(std::string(name) + "='" + v + "' is not a count");
  return static_cast<int>(x);
}

// Signals the launcher received, forwarded to the workers by its wait loop.
volatile sig_atomic_t g_forward = 0;
void OnSignal(int sig) { g_forward = sig; }

std::string Describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

}  // namespace

Status ParseHostPort(const std::string& s, std::string* host, int* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return InvalidArgument("--rdzv: expected HOST:PORT, got '" + s + "'");
  }
  char* end = nullptr;
  long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 1 || p > 65535) return InvalidArgument("--rdzv: port must be 1..65535 in '" + s + "'");
  *host = s.substr(0, colon);
  *port = static_cast<int>(p);
  return Status::OK();
}

Result<WorkerEnv> ReadWorkerEnv() {
  WorkerEnv w;
  if (!std::getenv("RONGHE_RANK")) return w;
  ASSIGN_OR_RETURN(w.rank, EnvInt("RONGHE_RANK"));
  ASSIGN_OR_RETURN(w.world, EnvInt("RONGHE_WORLD_SIZE"));
  ASSIGN_OR_RETURN(w.port, EnvInt("RONGHE_MASTER_PORT"));
  auto local = EnvInt("RONGHE_LOCAL_RANK");
  w.local_rank = local.ok() ? *local : w.rank;
  auto local_world = EnvInt("RONGHE_LOCAL_WORLD_SIZE");
  w.local_world = local_world.ok() && *local_world > 0 ? *local_world : 1;
  const char* host = std::getenv("RONGHE_MASTER_ADDR");
  w.host = host && *host ? host : "127.0.0.1";
  if (const char* t = std::getenv("RONGHE_DIST_TIMEOUT"); t && *t) w.timeout_s = std::atof(t);
  if (w.world < 1 || w.rank >= w.world) {
    return InvalidArgument("RONGHE_RANK=" + std::to_string(w.rank) + " is outside RONGHE_WORLD_SIZE=" +
                           std::to_string(w.world));
  }
  if (!(w.timeout_s > 0)) return InvalidArgument("RONGHE_DIST_TIMEOUT must be > 0 seconds");
  // A worker must not outlive its launcher (SIGKILLed by a scheduler, say): ask the kernel for
  // SIGTERM when the parent dies, and leave at once if it already has.
  if (const char* l = std::getenv("RONGHE_LAUNCHER_PID"); l && *l) {
    pid_t launcher = static_cast<pid_t>(std::atoll(l));
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != launcher) return Unavailable("the launcher (pid " + std::string(l) + ") is gone");
  }
  return w;
}

int LaunchWorkers(const std::vector<std::string>& args, const LaunchOptions& o) {
  const int world = o.nproc * o.nnodes;
  // SIGTERM/SIGINT to the launcher (a scheduler stopping the job) go on to every worker.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::map<pid_t, int> rank_of;
  for (int local = 0; local < o.nproc; ++local) {
    const int rank = o.node_rank * o.nproc + local;
    std::vector<std::string> env_strings = {
        "RONGHE_RANK=" + std::to_string(rank),       "RONGHE_LOCAL_RANK=" + std::to_string(local),
        "RONGHE_LOCAL_WORLD_SIZE=" + std::to_string(o.nproc),
        "RONGHE_WORLD_SIZE=" + std::to_string(world), "RONGHE_MASTER_ADDR=" + o.host,
        "RONGHE_MASTER_PORT=" + std::to_string(o.port),
        "RONGHE_DIST_TIMEOUT=" + std::to_string(o.timeout_s),
        "RONGHE_LAUNCHER_PID=" + std::to_string(getpid())};
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e) {
      if (std::string(*e).rfind("RONGHE_RANK=", 0) == 0 || std::string(*e).rfind("RONGHE_LAUNCHER_PID=", 0) == 0) continue;
      envp.push_back(*e);
    }
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> copy = args;
    std::string self = "/proc/self/exe";
    std::vector<char*> argv = {self.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()); rc != 0) {
      std::fprintf(stderr, "ronghe: error: cannot start rank %d: %s\n", rank, std::strerror(rc));
      for (auto& [p, r] : rank_of) kill(p, SIGTERM);
      for (auto& [p, r] : rank_of) waitpid(p, nullptr, 0);
      return 1;
    }
    rank_of[pid] = rank;
  }
  using Clock = std::chrono::steady_clock;
  int exit_code = 0;
  bool terminated = false;
  Clock::time_point deadline = Clock::time_point::max();
  while (!rank_of.empty()) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0 && rank_of.count(pid)) {
      int rank = rank_of[pid];
      rank_of.erase(pid);
      bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed) {
        std::fprintf(stderr, "ronghe: rank %d (pid %d) %s\n", rank, static_cast<int>(pid), Describe(status).c_str());
        if (exit_code == 0) {
          exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
          // Survivors see a dead peer at their next collective; give them the timeout to say so.
          deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>((o.timeout_s + 10) * 1000));
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (int sig = g_forward; sig != 0) {
      g_forward = 0;
      for (auto& [p, r] : rank_of) kill(p, sig);
      if (exit_code == 0) exit_code = 128 + sig;
    }
    if (!terminated && Clock::now() > deadline) {
      for (auto& [p, r] : rank_of) {
        std::fprintf(stderr, "ronghe: rank %d (pid %d) still running after a peer failed; sending SIGTERM\n", r,
                     static_cast<int>(p));
        kill(p, SIGTERM);
      }
      terminated = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return exit_code;
}

}  // namespace ronghe::cli
