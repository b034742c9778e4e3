// Resource use of a job: what the cost explorer reads from the run store.
#pragma once

#include <cstdint>
#include <string>

namespace ronghe {

struct ResourceUsage {
  double wall_seconds = 0;
  double cpu_user_seconds = 0;
  double cpu_system_seconds = 0;
  int64_t peak_rss_bytes = 0;  // high-water mark of resident memory (largest process when summed)
  std::string device = "cpu";  // "cpu", "cuda:0", ...
  int processes = 1;           // how many processes the numbers cover

  // Adds another process's use (wall time is the max: the processes ran side by side).
  void Merge(const ResourceUsage& other);
};

// Measures this process from construction to Read(). CPU times and peak RSS come from
// getrusage(RUSAGE_SELF); peak RSS is the process's lifetime peak (the kernel keeps no other).
class ResourceMeter {
 public:
  explicit ResourceMeter(std::string device = "cpu");
  ResourceUsage Read() const;

 private:
  double wall_start_;
  double user_start_;
  double sys_start_;
  std::string device_;
};

// Current peak RSS of this process, in bytes.
int64_t PeakRssBytes();

}  // namespace ronghe
