// From a trained LibTorch model (a .rhm artifact) to an edge artifact (.rhe) that ronghe-edge
// runs without LibTorch: fp32 weights as they are, or int8 after post-training quantisation
// (symmetric per-row weight scales; per-matrix activation scales calibrated on training inputs).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/data/source.h"
#include "ronghe/edge/runtime.h"
#include "ronghe/nn/model.h"
#include "ronghe/train/metrics.h"

namespace ronghe::edge {

struct ExportOptions {
  std::string precision = "fp32";       // Default: "fp32". Or "int8".
  std::string model_version;            // Default: "". Written into the header (the hub version).
  int64_t calibration_examples = 2048;  // Default: 2048. int8: training examples (the first
                                        // ones) whose activations set the scales.
  std::string calibration = "max";      // Default: "mse": per matrix, the clip that minimises
                                        // the squared quantisation error over the calibration
                                        // activations. "max": max |activation| (no clipping).
};

// `manifest` is the artifact's (task, preprocessing, name). int8 needs `calibration`: standardised
// training inputs [N, ...input_shape]. mlp (series windows or numeric table features), lstm and
// gru only; InvalidArgument naming what the edge runtime cannot run (a cnn, categorical columns).
Result<std::string> ExportEdge(nn::Model& model, const nlohmann::json& manifest,
                               const ExportOptions& options, const at::Tensor* calibration);

// Test metrics of an edge model on `d` (standardised inputs as data::LoadData gives them), in the
// units train::Evaluate reports: what the model loses by running at the edge or in int8.
Result<train::MetricMap> EvaluateEdge(const Model& model, const data::TensorData& d,
                                      data::Task task, const nlohmann::json& preprocessing);

// The largest |difference| between the edge model's and LibTorch's outputs (model space) on `x`.
Result<double> MaxDifference(const Model& edge, nn::Model& model, const at::Tensor& x);

}  // namespace ronghe::edge
