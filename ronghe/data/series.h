// Time-series windows for forecasting: the previous `input` points predict the next `horizon`.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::data {

struct WindowOptions {
  int64_t input = 48;   // Default: 48 points of history (one day of half-hours for taylor).
  int64_t horizon = 1;  // Default: 1 point ahead.
  int64_t stride = 1;   // Default: 1. Step between consecutive windows.
  std::vector<int64_t> lengths;  // Default: [] = every window has `input` points. Else each
                                 // window keeps the most recent L points of its history, L one
                                 // of these (each <= input), chosen per window by a seeded rule
                                 // on its start in the series: series of mixed lengths.
};

// Windows over series[begin, end): x [N, input, 1], y [N, horizon], both float32, after
// (v - mean) / std. Windows never cross `end`, so train windows never see test points.
Result<std::pair<at::Tensor, at::Tensor>> MakeWindows(const std::vector<double>& series,
                                                      int64_t begin, int64_t end,
                                                      const WindowOptions& options, double mean,
                                                      double std);

// One standardised column of a multivariate series.
struct SeriesColumn {
  const std::vector<double>* values = nullptr;
  double mean = 0, std = 1;
};

// The same with covariates: columns[0] is the forecast value, the others (e.g. temperature) are
// history features beside it. x [N, input, columns.size()], feature f = (columns[f] - mean) / std;
// y [N, horizon] from columns[0] only. Every column must be as long as columns[0].
Result<std::pair<at::Tensor, at::Tensor>> MakeWindows(const std::vector<SeriesColumn>& columns,
                                                      int64_t begin, int64_t end,
                                                      const WindowOptions& options);

}  // namespace ronghe::data
