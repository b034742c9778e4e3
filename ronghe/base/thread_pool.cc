#include "ronghe/base/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <thread>
#include <vector>

namespace ronghe {

int DefaultThreads() {
  // The CPUs this process may run on (taskset, cgroup cpusets), not every CPU of the machine.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int threads) {
  if (n <= 0) return;
  int t = threads > 0 ? threads : DefaultThreads();
  t = static_cast<int>(std::min<int64_t>(t, n));
  if (t == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  int64_t chunk = (n + t - 1) / t;
  for (int i = 1; i < t; ++i) {
    int64_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(0, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace ronghe
