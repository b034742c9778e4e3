#include "ronghe/data/series.h"

#include <torch/torch.h>

namespace ronghe::data {

Result<std::pair<at::Tensor, at::Tensor>> MakeWindows(const std::vector<double>& series,
                                                      int64_t begin, int64_t end,
                                                      const WindowOptions& o, double mean,
                                                      double std) {
  return MakeWindows(std::vector<SeriesColumn>{{&series, mean, std}}, begin, end, o);
}

Result<std::pair<at::Tensor, at::Tensor>> MakeWindows(const std::vector<SeriesColumn>& columns,
                                                      int64_t begin, int64_t end,
                                                      const WindowOptions& o) {
  if (o.input < 1 || o.horizon < 1 || o.stride < 1) {
    return InvalidArgument("window: input, horizon and stride must be at least 1");
  }
  if (columns.empty() || columns[0].values == nullptr) {
    return InvalidArgument("window: no value column");
  }
  const std::vector<double>& series = *columns[0].values;
  for (const SeriesColumn& c : columns) {
    if (c.values == nullptr || c.values->size() != series.size()) {
      return InvalidArgument("window: every column must be as long as the value column");
    }
  }
  if (begin < 0 || end > static_cast<int64_t>(series.size()) || begin > end) {
    return InvalidArgument("window: range out of bounds");
  }
  int64_t span = o.input + o.horizon;
  int64_t n = end - begin >= span ? (end - begin - span) / o.stride + 1 : 0;
  if (n <= 0) {
    return InvalidArgument("window: a segment of " + std::to_string(end - begin) +
                           " points is shorter than input + horizon = " + std::to_string(span));
  }
  const auto f = static_cast<int64_t>(columns.size());
  at::Tensor x = torch::empty({n, o.input, f}, torch::kFloat32);
  at::Tensor y = torch::empty({n, o.horizon}, torch::kFloat32);
  float* px = x.data_ptr<float>();
  float* py = y.data_ptr<float>();
  const double mean = columns[0].mean, std = columns[0].std;
  for (int64_t w = 0; w < n; ++w) {
    int64_t s = begin + w * o.stride;
    for (int64_t i = 0; i < o.input; ++i) {
      for (int64_t c = 0; c < f; ++c) {
        const SeriesColumn& col = columns[c];
        px[(w * o.input + i) * f + c] =
            static_cast<float>(((*col.values)[s + i] - col.mean) / col.std);
      }
    }
    for (int64_t h = 0; h < o.horizon; ++h) {
      py[w * o.horizon + h] = static_cast<float>((series[s + o.input + h] - mean) / std);
    }
  }
  return std::make_pair(x, y);
}

}  // namespace ronghe::data
