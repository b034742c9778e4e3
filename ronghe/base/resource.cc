#include "ronghe/base/resource.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>

namespace ronghe {

namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double Seconds(const timeval& tv) { return tv.tv_sec + tv.tv_usec * 1e-6; }
}  // namespace

void ResourceUsage::Merge(const ResourceUsage& o) {
  wall_seconds = std::max(wall_seconds, o.wall_seconds);
  cpu_user_seconds += o.cpu_user_seconds;
  cpu_system_seconds += o.cpu_system_seconds;
  peak_rss_bytes = std::max(peak_rss_bytes, o.peak_rss_bytes);
  processes += o.processes;
}

ResourceMeter::ResourceMeter(std::string device) : device_(std::move(device)) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  wall_start_ = Now();
  user_start_ = Seconds(ru.ru_utime);
  sys_start_ = Seconds(ru.ru_stime);
}

ResourceUsage ResourceMeter::Read() const {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  ResourceUsage u;
  u.wall_seconds = Now() - wall_start_;
  u.cpu_user_seconds = Seconds(ru.ru_utime) - user_start_;
  u.cpu_system_seconds = Seconds(ru.ru_stime) - sys_start_;
  u.peak_rss_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  u.device = device_;
  return u;
}

int64_t PeakRssBytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

}  // namespace ronghe
