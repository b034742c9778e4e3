// The edge runtime: runs an edge artifact (format.h) in plain C++, no LibTorch. MLPs (on lags or
// table features), LSTMs and GRUs (PyTorch's gate layouts), in fp32 or int8 (per-row weight
// scales, calibrated per-tensor activation scales, int32 accumulation).
//
// Inputs are raw values (the meter's MW and degrees, the sensor's readings) when the artifact
// carries the training statistics, which it applies; regression outputs come back in original
// units. Predict is thread-safe and, once a thread has run a model of a given size, allocates
// nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/edge/format.h"

namespace ronghe::edge {

// What the int8 exporter learns from calibration inputs, per weight matrix: first the largest
// |input| (pass 1), then a histogram of |input| up to it (pass 2, histogram = true), from which
// Scale() picks the activation scale that minimises the quantisation error.
struct ActivationStats {
  static constexpr int64_t kBins = 512;
  bool histogram = false;
  std::vector<float> max_abs;
  std::vector<std::vector<double>> hist;
  void Add(size_t matrix, const float* x, int64_t n);
  float Scale(size_t matrix) const;      // the MSE-optimal clip / 127
  float MaxScale(size_t matrix) const {  // max |input| / 127 (no clipping)
    return matrix < max_abs.size() && max_abs[matrix] > 0 ? max_abs[matrix] / 127 : 1.0f / 127;
  }
};

class Model {
 public:
  static Result<std::unique_ptr<Model>> Load(const std::string& path);
  static Result<std::unique_ptr<Model>> FromBytes(const std::string& bytes,
                                                  const std::string& source);
  ~Model();

  // input: steps() x features() raw values, row-major (oldest step first); out: outputs().
  // InvalidArgument on a wrong size or a non-finite input.
  Status Predict(const float* input, int64_t n, float* out) const;
  // The model's own space: standardised inputs, standardised (regression) outputs or logits.
  // What LibTorch's forward returns, for equality checks.
  Status PredictStandardised(const float* x, int64_t n, float* out) const;

  // Calibration (the int8 exporter): runs the model on standardised `x` and adds every value
  // entering matrix i (linear_names()[i]) to `stats`. Not for concurrent use with Predict.
  Status Observe(const float* x, int64_t n, ActivationStats* stats) const;
  // The weight tensors' names, in the order Observe reports them.
  const std::vector<std::string>& linear_names() const { return linear_names_; }

  int64_t steps() const { return steps_; }        // 1 for tables
  int64_t features() const { return features_; }  // per step
  int64_t input_size() const { return steps_ * features_; }
  int64_t outputs() const { return outputs_; }
  const std::string& kind() const { return kind_; }
  const std::string& precision() const { return precision_; }
  const std::string& task() const { return task_; }
  const nlohmann::json& header() const { return header_; }
  int64_t parameters() const { return parameters_; }

 private:
  struct Linear;
  Model() = default;
  Status Init(const std::string& source);
  void Run(const float* x, float* out) const;
  void Apply(const Linear& l, const float* x, float* y) const;

  Artifact artifact_;
  nlohmann::json header_;
  std::string kind_, precision_, task_;
  int64_t steps_ = 1, features_ = 0, outputs_ = 0, hidden_ = 0, layers_ = 0, parameters_ = 0;
  std::vector<Linear> linears_;  // mlp: dense layers; rnn: per layer ih, hh; then proj
  std::vector<std::string> linear_names_;
  std::vector<float> in_mean_, in_inv_std_;  // per feature; empty: inputs already standardised
  float out_mean_ = 0, out_std_ = 1;
  bool denormalise_ = false;
};

}  // namespace ronghe::edge
