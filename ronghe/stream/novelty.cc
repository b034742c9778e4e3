#include "ronghe/stream/novelty.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "ronghe/data/source.h"
#include "ronghe/serve/repository.h"

namespace ronghe::stream {

double Energy(const float* logits, int64_t n) {
  float m = logits[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, logits[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(logits[i] - m));
  return -(static_cast<double>(m) + std::log(s));
}

double Quantile(std::vector<double>* v, double q) {
  if (v->empty()) return 0;
  std::sort(v->begin(), v->end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(v->size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v->size() - 1);
  return (*v)[lo] + (pos - static_cast<double>(lo)) * ((*v)[hi] - (*v)[lo]);
}

namespace {

// Validation inputs per data set (as the manifest's options and statistics give them): loading
// Fashion-MNIST costs a second, and a line calibrates at start and on every new version.
Result<at::Tensor> ValidationInputs(const nlohmann::json& manifest, const std::string& home) {
  static std::mutex mu;
  static std::map<std::string, at::Tensor> cache;
  if (!manifest.contains("data") || !manifest.contains("preprocessing")) {
    return InvalidArgument("the model's manifest names no data set to calibrate on");
  }
  const std::string key = manifest["data"].dump() + manifest["preprocessing"].dump();
  std::lock_guard<std::mutex> l(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ASSIGN_OR_RETURN(data::DataOptions o, data::DataOptions::FromJson(manifest["data"]));
  ASSIGN_OR_RETURN(data::LoadedData d, data::LoadData(o, home, &manifest["preprocessing"]));
  at::Tensor x = d.val.size() > 0 ? d.val.x : d.test.x;
  cache[key] = x;
  return x;
}

}  // namespace

Result<NoveltyCalibration> CalibrateNovelty(serve::ServedVersion& version, const std::string& home,
                                            double far, int64_t max_frames) {
  if (!(far > 0 && far < 1)) return InvalidArgument("false_alarm_rate must lie in (0, 1)");
  ASSIGN_OR_RETURN(at::Tensor x, ValidationInputs(version.manifest(), home));
  const int64_t n = std::min<int64_t>(x.size(0), std::max<int64_t>(max_frames, 100));
  const int64_t chunk = std::max<int64_t>(1, version.batching().max_batch_size);
  std::vector<double> energies;
  energies.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i += chunk) {
    ASSIGN_OR_RETURN(at::Tensor y, version.Infer(x.narrow(0, i, std::min(chunk, n - i)), 0, 0));
    y = y.contiguous();
    const float* p = y.data_ptr<float>();
    for (int64_t r = 0; r < y.size(0); ++r)
      energies.push_back(Energy(p + r * y.size(1), y.size(1)));
  }
  NoveltyCalibration c;
  c.false_alarm_rate = far;
  c.frames = static_cast<int64_t>(energies.size());
  std::vector<double> sorted = energies;
  c.threshold = Quantile(&sorted, 1 - far);
  int64_t above = 0;
  for (double e : energies) above += e > c.threshold;
  c.measured_rate =
      static_cast<double>(above) / static_cast<double>(std::max<int64_t>(1, c.frames));
  return c;
}

}  // namespace ronghe::stream
