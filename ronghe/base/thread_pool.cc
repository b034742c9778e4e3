#include "ronghe/base/thread_pool.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace ronghe {

int DefaultThreads() { return std::max(1u, std::thread::hardware_concurrency()); }

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
