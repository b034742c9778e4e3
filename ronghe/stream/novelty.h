// Novelty: is a frame unlike every class the model knows? Two scores, higher = more novel:
//   mahalanobis  (default) the squared Mahalanobis distance of the frame's embedding (the input of
//                the model's output layer) to the nearest class mean, with one covariance shared by
//                the classes (Lee et al., 2018). It sees that a boot is not quite a sneaker, which
//                the logits alone hide.
//   energy       -log sum_c exp(logit_c) (Liu et al., 2020): needs the logits only.
// docs/benchmarks.md compares them on the inspection model: at 1% false alarms the energy flags
// 0.2% of the held-out class's frames, the Mahalanobis distance 7%; at 5%, 1% against 35%.
// The class means and covariance come from the manifest's "novelty" section when it has one (an
// adapted model carries the statistics of its new class) and otherwise from the model's training
// data. The threshold is the (1 - false_alarm_rate) quantile of the scores of the model's
// validation frames: by construction that share of known-class frames is flagged.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::serve {
class ServedVersion;
}
namespace ronghe::nn {
class Model;
}
namespace ronghe::data {
struct TensorData;
}

namespace ronghe::stream {

// Energy of one row of `n` logits (numerically stable).
double Energy(const float* logits, int64_t n);

// The q-quantile (0..1) of `values` (sorted in place), linear between order statistics.
double Quantile(std::vector<double>* values, double q);

// Class means and the shared precision of embeddings, as stored in a manifest's "novelty".
struct ClassGaussians {
  int64_t classes = 0, dim = 0;
  std::vector<double> precision;  // dim x dim
  std::vector<double> p_means;    // classes x dim: precision * mean_k
  std::vector<double> m_p_m;      // classes: mean_k' precision mean_k
  // min_k (z - m_k)' P (z - m_k); `scratch` holds dim doubles.
  double Distance(const float* z, std::vector<double>* scratch) const;
  nlohmann::json ToJson(const std::vector<std::vector<double>>& means) const;
};

Result<ClassGaussians> GaussiansFromJson(const nlohmann::json& j);

struct NoveltyCalibration {
  std::string score;  // "mahalanobis" | "energy"
  double threshold = 0;
  double false_alarm_rate = 0;  // asked for
  double measured_rate = 0;     // on the calibration frames (ties can make it lower)
  int64_t frames = 0;
  ClassGaussians gaussians;  // mahalanobis only
};

// Calibrates on up to `max_frames` validation frames of the data set `version`'s manifest names
// (loaded from `home`, with the manifest's own preprocessing and held-out classes). Mahalanobis
// needs a version served with embeddings; energy works on any.
Result<NoveltyCalibration> CalibrateNovelty(serve::ServedVersion& version, const std::string& home,
                                            double false_alarm_rate, int64_t max_frames,
                                            const std::string& score = "mahalanobis");

// The statistics an adapted model carries: its embeddings of `x` [N, ...] with labels `y`.
Result<nlohmann::json> NoveltyStatistics(nn::Model& model, const data::TensorData& d);

}  // namespace ronghe::stream
