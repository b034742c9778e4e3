// The training engine: one model, one LoadedData, one Job record. Adam/SGD, LR schedules,
// gradient clipping, early stopping, class weights, fp32 or bf16 autocast, checkpoints that
// resume bit-for-bit, and a progress display.
//
// Distributed data parallel (with a dist::Collective): every rank walks the same global batches,
// takes its contiguous share of each, and its loss is the share's summed loss over the global
// batch's denominator, so the all-reduced gradient is exactly the single-process gradient of the
// global batch. Batch-norm statistics are per rank during an epoch and averaged at its end (no
// SyncBatchNorm); dropout draws from a generator seeded per (seed, rank, step). Rank 0 alone
// writes checkpoints and records; validation and test batches are shared out and their outputs
// gathered, so every rank takes the same early-stopping decisions.
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

namespace ronghe::dist {
class Collective;
class GradientReducer;
}  // namespace ronghe::dist

namespace ronghe::train {

struct TrainOptions {
  int64_t epochs = 10;                // Default: 10.
  int64_t batch_size = 64;            // Default: 64.
  int64_t eval_batch_size = 1024;     // Default: 1024.
  std::string optimizer = "adam";     // Default: "adam". Or "sgd" (with momentum).
  double lr = 1e-3;                   // Default: 1e-3.
  double momentum = 0.9;              // Default: 0.9 (sgd only).
  double weight_decay = 0;            // Default: 0.
  std::string schedule = "constant";  // Default: "constant". Or "step", "cosine".
  int64_t step_epochs = 10;  // Default: 10. "step": multiply by gamma every this many epochs.
  double gamma = 0.1;        // Default: 0.1.
  int64_t warmup_steps = 0;  // Default: 0. Linear warm-up over this many steps.
  double grad_clip = 0;      // Default: 0 = off. Max global gradient L2 norm.
  int64_t patience = 0;      // Default: 0 = off. Stop after this many epochs w/o improvement.
  std::string monitor;       // Default: "" = val loss. Any val metric, e.g. "roc_auc".
  std::string class_weights = "none";  // Default: "none". "balanced" weighs classes by 1/frequency.
  std::string precision = "fp32";   // Default: "fp32". "bf16": autocast matmuls/convs to bfloat16.
  std::string batching = "bucket";  // Default: "bucket". Mixed-size data: each batch holds one
                                    // size (shape buckets). "pad": every example padded to the
                                    // largest (the baseline bucketing is measured against).
  int64_t max_elements = 0;         // Default: 0 = batch_size x the largest example, i.e. batches
                                    // of batch_size. Else batches fill up to this many padded input
                                    // elements (pixels, time steps) and batch_size does not apply.
  int64_t checkpoint_every = 0;     // Default: 0 = at each epoch end only. Else every N steps too.
  uint64_t seed = 1;                // Default: 1. Weights init, shuffling, dropout.
  // Distillation, when the training data carries a teacher's outputs (TensorData::teacher):
  // loss = (1 - alpha) * task loss + alpha * DistillLoss (see there).
  double distill_alpha = 0.5;        // Default: 0.5. Weight of the teacher term, in [0, 1].
  double distill_temperature = 2.0;  // Default: 2. Softens classifiers' logits (Hinton et al.).
  int threads = 0;                   // Default: 0 = every logical CPU.
  std::string progress = "auto";     // Default: "auto" = bar on a terminal, log lines otherwise.

  nlohmann::json ToJson() const;
};

// Reads `train.*` keys.
Status ParseTrainOptions(Config& cfg, TrainOptions* out);

struct TrainResult {
  MetricMap val;  // last completed epoch (best epoch when early stopping restored it)
  MetricMap test;
  int64_t epochs_completed = 0;
  int64_t steps = 0;
  bool stopped_early = false;
  bool resumed = false;
  double train_seconds = 0;       // this process's time in the training loop
  double samples_per_second = 0;  // global: all ranks' samples over the loop time
  int world = 1;
};

struct EvalOptions {
  int64_t batch_size = 1024;       // Default: 1024 examples of the smallest size per batch; larger
                                   // examples go in proportionally smaller batches.
  std::string precision = "fp32";  // Default: "fp32".
  int64_t canvas = 0;              // Default: 0 = batches by size. > 0: pad-to-max on this canvas.
  dist::Collective* collective = nullptr;  // Default: none. Shares batches out over the ranks.
};

// Evaluates on `data` (eval mode, no grad). Includes "loss". For regression, errors are reported
// in original units using the series' mean/std from `preprocessing`.
// Mixed-size image data adds "accuracy_<side>px" per resolution (multi-class).
Result<MetricMap> Evaluate(nn::Model& model, const data::TensorData& data, data::Task task,
                           const nlohmann::json& preprocessing, const EvalOptions& options);
Result<MetricMap> Evaluate(nn::Model& model, const data::TensorData& data, data::Task task,
                           const nlohmann::json& preprocessing, int64_t batch_size,
                           const std::string& precision);

// The loss the trainer minimises, in float32. `weight`: class weights (multi-class) or
// pos_weight (binary); undefined for none.
at::Tensor TaskLoss(const at::Tensor& out, const at::Tensor& y, data::Task task,
                    const at::Tensor& weight);
// The teacher term of distillation, summed over the batch (divide by the task loss's denominator):
// regression: squared error to the teacher's forecast, like the task's MSE; binary: T^2 x binary
// cross-entropy of sigmoid(out / T) against sigmoid(teacher / T); multi-class: T^2 x
// KL(softmax(teacher / T) || softmax(out / T)). The T^2 keeps the soft term's gradient on the
// scale of the hard term's as T grows (Hinton, Vinyals, Dean 2015).
at::Tensor DistillLossSum(const at::Tensor& out, const at::Tensor& teacher, data::Task task,
                          double temperature);
// "balanced" class weights from labels: binary gives pos_weight = negatives / positives.
Result<at::Tensor> BalancedClassWeights(const at::Tensor& y, data::Task task, int64_t num_classes);

class Trainer {
 public:
  // `job` may be null (no record). `checkpoint_path` "" disables checkpoints. `collective`
  // (optional) makes this one rank of a data-parallel run; give ranks other than 0 no job and no
  // checkpoint path.
  static Result<std::unique_ptr<Trainer>> Create(const TrainOptions& options, nn::Model* model,
                                                 const data::LoadedData* data, store::Job* job,
                                                 std::string checkpoint_path,
                                                 dist::Collective* collective = nullptr);
  ~Trainer();

  // Trains to the end. With `resume` and an existing checkpoint, continues from it.
  Result<TrainResult> Run(bool resume);

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::train
