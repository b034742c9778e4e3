#include "ronghe/cli/launch.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "ronghe/base/subprocess.h"

namespace ronghe::cli {

namespace {

Result<int> EnvInt(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return InvalidArgument(std::string(name) + " is not set");
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1 << 20)
    return InvalidArgument(std::string(name) + "='" + v + "' is not a count");
  return static_cast<int>(x);
}

// Signals the launcher received, forwarded to the workers by its wait loop.
volatile sig_atomic_t g_forward = 0;
void OnSignal(int sig) { g_forward = sig; }

}  // namespace

Status ParseHostPort(const std::string& s, std::string* host, int* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return InvalidArgument("--rdzv: expected HOST:PORT, got '" + s + "'");
  }
  char* end = nullptr;
  long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 1 || p > 65535)
    return InvalidArgument("--rdzv: port must be 1..65535 in '" + s + "'");
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
    return InvalidArgument("RONGHE_RANK=" + std::to_string(w.rank) +
                           " is outside RONGHE_WORLD_SIZE=" + std::to_string(w.world));
  }
  if (!(w.timeout_s > 0)) return InvalidArgument("RONGHE_DIST_TIMEOUT must be > 0 seconds");
  // A worker must not outlive its launcher (SIGKILLed by a scheduler, say): ask the kernel for
  // SIGTERM when the parent dies, and leave at once if it already has.
  if (const char* l = std::getenv("RONGHE_LAUNCHER_PID"); l && *l) {
    Status alive = DieWithParent(SIGTERM, static_cast<pid_t>(std::atoll(l)));
    if (!alive.ok()) return Unavailable("the launcher (pid " + std::string(l) + ") is gone");
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
  std::vector<Subprocess> workers;
  for (int local = 0; local < o.nproc; ++local) {
    const int rank = o.node_rank * o.nproc + local;
    SpawnOptions so;
    so.argv = {"/proc/self/exe"};
    so.argv.insert(so.argv.end(), args.begin(), args.end());
    so.env = {"RONGHE_RANK=" + std::to_string(rank),
              "RONGHE_LOCAL_RANK=" + std::to_string(local),
              "RONGHE_LOCAL_WORLD_SIZE=" + std::to_string(o.nproc),
              "RONGHE_WORLD_SIZE=" + std::to_string(world),
              "RONGHE_MASTER_ADDR=" + o.host,
              "RONGHE_MASTER_PORT=" + std::to_string(o.port),
              "RONGHE_DIST_TIMEOUT=" + std::to_string(o.timeout_s),
              "RONGHE_LAUNCHER_PID=" + std::to_string(getpid())};
    auto w = Subprocess::Spawn(so);
    if (!w.ok()) {
      std::fprintf(stderr, "ronghe: error: cannot start rank %d: %s\n", rank,
                   w.status().message().c_str());
      for (auto& started : workers) started.Signal(SIGTERM);
      for (auto& started : workers) (void)started.Wait();
      return 1;
    }
    rank_of[w->pid()] = rank;
    workers.push_back(std::move(*w));
  }
  using Clock = std::chrono::steady_clock;
  int exit_code = 0;
  bool terminated = false;
  Clock::time_point deadline = Clock::time_point::max();
  while (!rank_of.empty()) {
    auto ended = WaitAnyChild(0.05);
    if (ended && rank_of.count(ended->first)) {
      const pid_t pid = ended->first;
      const ExitStatus& status = ended->second;
      int rank = rank_of[pid];
      rank_of.erase(pid);
      if (!status.ok()) {
        std::fprintf(stderr, "ronghe: rank %d (pid %d) %s\n", rank, static_cast<int>(pid),
                     status.Describe().c_str());
        if (exit_code == 0) {
          exit_code = status.signaled ? 1 : status.code;
          // Survivors see a dead peer at their next collective; give them the timeout to say so.
          deadline = Clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>((o.timeout_s + 10) * 1000));
        }
      }
      continue;
    }
    if (int sig = g_forward; sig != 0) {
      g_forward = 0;
      for (auto& [p, r] : rank_of) kill(p, sig);
      if (exit_code == 0) exit_code = 128 + sig;
    }
    if (!terminated && Clock::now() > deadline) {
      for (auto& [p, r] : rank_of) {
        std::fprintf(
            stderr, "ronghe: rank %d (pid %d) still running after a peer failed; sending SIGTERM\n",
            r, static_cast<int>(p));
        kill(p, SIGTERM);
      }
      terminated = true;
    }
  }
  return exit_code;
}

}  // namespace ronghe::cli
