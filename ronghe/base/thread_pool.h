// ParallelFor over all cores. Work is split into contiguous chunks, one per thread, so results
// written by index need no locking. Exceptions are not used across threads: `fn` must not throw.
#pragma once

#include <cstdint>
#include <functional>

namespace ronghe {

// Number of threads ParallelFor uses when `threads` is 0: every logical CPU this process may run
// on (its affinity mask).
int DefaultThreads();

// Calls fn(begin, end) on disjoint ranges covering [0, n), from up to `threads` threads
// (0 = DefaultThreads()). Returns when all calls have returned.
void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int threads = 0);

}  // namespace ronghe
