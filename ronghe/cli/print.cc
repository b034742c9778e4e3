#include "ronghe/cli/print.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace ronghe::cli {

std::string FormatTime(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string FormatBytes(int64_t b) {
  char buf[32];
  if (b >= (1 << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1 << 30));
  else if (b >= (1 << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1 << 20));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

void PrintMetrics(const std::string& title, const std::map<std::string, double>& m) {
  std::printf("%s:", title.c_str());
  for (const auto& [k, v] : m) {
    if (k == "lr") continue;
    std::printf(" %s=%.4f", k.c_str(), v);
  }
  std::printf("\n");
}

void PrintPerResolution(const std::map<std::string, double>& m) {
  std::map<int64_t, double> acc;
  for (const auto& [k, v] : m) {
    if (k.rfind("accuracy_", 0) == 0 && k.size() > 11 && k.compare(k.size() - 2, 2, "px") == 0) {
      acc[std::atoll(k.c_str() + 9)] = v;
    }
  }
  if (acc.empty()) return;
  std::printf("%-12s %s\n", "resolution", "test accuracy");
  for (const auto& [side, v] : acc) std::printf("%4ld px      %.4f\n", long(side), v);
}

}  // namespace ronghe::cli
