// Printing shared by the command files: times, sizes, metric lines.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ronghe::cli {

// "2026-11-30 13:37:47" (local time), or "-" for 0.
std::string FormatTime(double unix_seconds);
// "1.5 MiB", "12.0 KiB", "2.00 GiB".
std::string FormatBytes(int64_t bytes);
// "title: name=value ..." (4 decimals), skipping the learning rate.
void PrintMetrics(const std::string& title, const std::map<std::string, double>& metrics);
// Mixed-resolution image runs: test accuracy per resolution as a small table (nothing when the
// metrics have no accuracy_<N>px).
void PrintPerResolution(const std::map<std::string, double>& metrics);

}  // namespace ronghe::cli
