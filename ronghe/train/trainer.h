// The training engine: one model, one LoadedData, one Job record. Adam/SGD, LR schedules,
// gradient clipping, early stopping, class weights, fp32 or bf16 autocast, checkpoints that
// resume bit-for-bit, and a progress display.
//
// Determinism: the epoch order is a function of (seed, epoch), the torch generator (dropout) is
// saved in every checkpoint, and the LR is a function of the step. So a run killed at any moment
// and resumed from its last checkpoint ends with the same weights as an uninterrupted run, given
// the same thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ronghe/base/config.h"
#include "ronghe/base/status.h"
#include "ronghe/data/source.h"
#include "ronghe/nn/model.h"
#include "ronghe/store/run_store.h"
#include "ronghe/train/metrics.h"

namespace ronghe::train {

struct TrainOptions {
  int64_t epochs = 10;               // Default: 10.
  int64_t batch_size = 64;           // Default: 64.
  int64_t eval_batch_size = 1024;    // Default: 1024.
  std::string optimizer = "adam";    // Default: "adam". Or "sgd" (with momentum).
  double lr = 1e-3;                  // Default: 1e-3.
  double momentum = 0.9;             // Default: 0.9 (sgd only).
  double weight_decay = 0;           // Default: 0.
  std::string schedule = "constant"; // Default: "constant". Or "step", "cosine".
  int64_t step_epochs = 10;          // Default: 10. "step": multiply by gamma every this many epochs.
  double gamma = 0.1;                // Default: 0.1.
  int64_t warmup_steps = 0;          // Default: 0. Linear warm-up over this many steps.
  double grad_clip = 0;              // Default: 0 = off. Max global gradient L2 norm.
  int64_t patience = 0;              // Default: 0 = off. Stop after this many epochs w/o improvement.
  std::string monitor;               // Default: "" = val loss. Any val metric, e.g. "roc_auc".
  std::string class_weights = "none";  // Default: "none". "balanced" weighs classes by 1/frequency.
  std::string precision = "fp32";    // Default: "fp32". "bf16": autocast matmuls/convs to bfloat16.
  int64_t checkpoint_every = 0;      // Default: 0 = at each epoch end only. Else every N steps too.
  uint64_t seed = 1;                 // Default: 1. Weights init, shuffling, dropout.
  int threads = 0;                   // Default: 0 = every logical CPU.
  std::string progress = "auto";     // Default: "auto" = bar on a terminal, log lines otherwise.

  nlohmann::json ToJson() const;
};

// Reads `train.*` keys.
Status ParseTrainOptions(Config& cfg, TrainOptions* out);

struct TrainResult {
  MetricMap val;                 // last completed epoch (best epoch when early stopping restored it)
  MetricMap test;
  int64_t epochs_completed = 0;
  int64_t steps = 0;
  bool stopped_early = false;
  bool resumed = false;
  double train_seconds = 0;      // this process's time in the training loop
  double samples_per_second = 0;
};

// Evaluates on `data` (eval mode, no grad). Includes "loss". For regression, errors are reported
// in original units using the series' mean/std from `preprocessing`.
Result<MetricMap> Evaluate(nn::Model& model, const data::TensorData& data, data::Task task,
                           const nlohmann::json& preprocessing, int64_t batch_size,
                           const std::string& precision);

// The loss the trainer minimises, in float32. `weight`: class weights (multi-class) or
// pos_weight (binary); undefined for none.
at::Tensor TaskLoss(const at::Tensor& out, const at::Tensor& y, data::Task task, const at::Tensor& weight);
// "balanced" class weights from labels: binary gives pos_weight = negatives / positives.
Result<at::Tensor> BalancedClassWeights(const at::Tensor& y, data::Task task, int64_t num_classes);

class Trainer {
 public:
  // `job` may be null (no record). `checkpoint_path` "" disables checkpoints.
  static Result<std::unique_ptr<Trainer>> Create(const TrainOptions& options, nn::Model* model,
                                                 const data::LoadedData* data, store::Job* job,
                                                 std::string checkpoint_path);
  ~Trainer();

  // Trains to the end. With `resume` and an existing checkpoint, continues from it.
  Result<TrainResult> Run(bool resume);

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::train
