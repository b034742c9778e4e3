// The model zoo built from config: an MLP for tables, a small CNN for images, an LSTM or GRU for
// series.
// Built on LibTorch modules, held behind a pimpl so this header stays light (no <torch/torch.h>).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ronghe/base/config.h"
#include "ronghe/base/status.h"

namespace torch::nn {
class Module;
}

namespace ronghe::nn {

struct ModelConfig {
  std::string kind;                  // "mlp" | "cnn" | "lstm" | "gru" (required)
  std::vector<int64_t> input_shape;  // one example; filled in from the data
  int64_t outputs = 0;               // logits (binary: 1) or forecast horizon; from data
  // mlp
  std::vector<int64_t> hidden = {64, 32};  // Default: two hidden layers, 64 and 32 wide.
  double dropout = 0.0;                    // Default: 0 (mlp and the cnn's dense layer).
  // cnn: conv3x3-BN-ReLU-maxpool2 per entry, then adaptive average pool and a dense layer.
  std::vector<int64_t> channels = {32, 64};  // Default: 32, 64.
  int64_t pool_size = 7;                     // Default: 7. Adaptive pool output side.
  int64_t dense = 128;                       // Default: 128.
  // lstm and gru (the keys keep the lstm's name for both cells)
  int64_t lstm_hidden = 64;  // Default: 64.
  int64_t lstm_layers = 1;   // Default: 1.

  nlohmann::json ToJson() const;
  static Result<ModelConfig> FromJson(const nlohmann::json& j);
};

// Reads `model.*` keys. input_shape and outputs come from the data, not the file.
Status ParseModelConfig(Config& cfg, ModelConfig* out);

class Model {
 public:
  // InvalidArgument when the config does not fit (e.g. a CNN on 1-D input).
  static Result<std::unique_ptr<Model>> Create(const ModelConfig& config);
  ~Model();

  // x: [N, ...input_shape] float. Returns [N, outputs].
  at::Tensor Forward(const at::Tensor& x);
  // LSTM and GRU only: x [N, T, features] padded to the longest; lengths int64 [N], each in 1..T.
  // Row i is computed from its first lengths[i] steps only (packed sequences). Other kinds throw.
  at::Tensor Forward(const at::Tensor& x, const at::Tensor& lengths);
  // The input of the output layer (mlp, cnn): what the model has learnt to see, [N, width]; for
  // distances between examples (novelty). The lstm throws.
  at::Tensor Embed(const at::Tensor& x);
  // The output layer alone, on an embedding: Forward(x) == Head(Embed(x)).
  at::Tensor Head(const at::Tensor& embedding);
  void SetTraining(bool training);

  std::vector<at::Tensor> Parameters() const;
  // Parameters and buffers (batch-norm statistics), in a stable order with stable names.
  std::vector<std::pair<std::string, at::Tensor>> NamedState() const;
  // Copies values in by name; a missing, extra or mis-shaped tensor is DataLoss naming it.
  Status LoadState(const std::vector<std::pair<std::string, at::Tensor>>& state);
  int64_t NumParameters() const;

  const ModelConfig& config() const { return config_; }
  torch::nn::Module& module();

 private:
  struct Impl;
  Model(ModelConfig config, std::unique_ptr<Impl> impl);
  ModelConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::nn
