#include "ronghe/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/data/batch.h"
#include "ronghe/data/bucketing.h"
#include "ronghe/dist/collective.h"
#include "ronghe/nn/tensor_file.h"

namespace ronghe::train {

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool HigherIsBetter(const std::string& metric) {
  return !(metric == "loss" || metric == "mae" || metric == "rmse" || metric == "mape" ||
           metric == "fpr");
}

// Enables CPU bf16 autocast for its lifetime (matmuls and convolutions run in bfloat16,
// reductions and the loss stay in float32).
class AutocastGuard {
 public:
  explicit AutocastGuard(bool on) : on_(on) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  ~AutocastGuard() {
    if (!on_) return;
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
    at::autocast::clear_cache();
  }

 private:
  bool on_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  auto t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", long(t / 3600), long(t / 60 % 60),
                  long(t % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", long(t / 60), long(t % 60));
  }
  return buf;
}

// A progress bar with rate and ETA on a terminal; a log line every ~10% otherwise.
class Progress {
 public:
  Progress(const std::string& mode, int64_t epoch, int64_t epochs, int64_t total)
      : epoch_(epoch), epochs_(epochs), total_(total), start_(Now()) {
    if (mode == "off") {
      kind_ = kOff;
    } else if (mode == "bar" || (mode == "auto" && isatty(STDERR_FILENO))) {
      kind_ = kBar;
    } else {
      kind_ = kPlain;
    }
  }
  void Update(int64_t done, int64_t samples, double loss) {
    double now = Now(), elapsed = now - start_;
    double rate = elapsed > 0 ? samples / elapsed : 0;
    double eta = done > 0 ? elapsed / done * (total_ - done) : NAN;
    if (kind_ == kBar) {
      if (now - last_ < 0.1 && done != total_) return;
      last_ = now;
      int width = 30, filled = total_ ? static_cast<int>(width * done / total_) : width;
      std::string bar(filled, '#');
      bar.resize(width, ' ');
      std::fprintf(stderr, "\repoch %ld/%ld |%s| %3d%% %ld/%ld %.0f samples/s ETA %s loss %.4f ",
                   long(epoch_), long(epochs_), bar.c_str(),
                   int(total_ ? 100 * done / total_ : 100), long(done), long(total_), rate,
                   FormatDuration(eta).c_str(), loss);
      if (done == total_) std::fprintf(stderr, "\n");
    } else if (kind_ == kPlain) {
      int64_t decile = total_ ? 10 * done / total_ : 10;
      if (decile == last_decile_ && done != total_) return;
      last_decile_ = decile;
      if (done == 0) return;
      spdlog::info("epoch {}/{} step {}/{} loss {:.4f} {:.0f} samples/s ETA {}", epoch_, epochs_,
                   done, total_, loss, rate, FormatDuration(eta));
    }
  }

 private:
  enum Kind { kOff, kBar, kPlain } kind_;
  int64_t epoch_, epochs_, total_;
  double start_, last_ = 0;
  int64_t last_decile_ = -1;
};

}  // namespace

nlohmann::json TrainOptions::ToJson() const {
  return {{"epochs", epochs},
          {"batch_size", batch_size},
          {"eval_batch_size", eval_batch_size},
          {"optimizer", optimizer},
          {"lr", lr},
          {"momentum", momentum},
          {"weight_decay", weight_decay},
          {"schedule", schedule},
          {"step_epochs", step_epochs},
          {"gamma", gamma},
          {"warmup_steps", warmup_steps},
          {"grad_clip", grad_clip},
          {"patience", patience},
          {"monitor", monitor},
          {"class_weights", class_weights},
          {"precision", precision},
          {"batching", batching},
          {"max_elements", max_elements},
          {"checkpoint_every", checkpoint_every},
          {"seed", seed},
          {"threads", threads},
          {"distill_alpha", distill_alpha},
          {"distill_temperature", distill_temperature}};
}

Status ParseTrainOptions(Config& cfg, TrainOptions* o) {
  RETURN_IF_ERROR(cfg.Get("train.epochs", &o->epochs));
  RETURN_IF_ERROR(cfg.Get("train.batch_size", &o->batch_size));
  RETURN_IF_ERROR(cfg.Get("train.eval_batch_size", &o->eval_batch_size));
  RETURN_IF_ERROR(cfg.Get("train.optimizer", &o->optimizer));
  RETURN_IF_ERROR(cfg.Get("train.lr", &o->lr));
  RETURN_IF_ERROR(cfg.Get("train.momentum", &o->momentum));
  RETURN_IF_ERROR(cfg.Get("train.weight_decay", &o->weight_decay));
  RETURN_IF_ERROR(cfg.Get("train.schedule", &o->schedule));
  RETURN_IF_ERROR(cfg.Get("train.step_epochs", &o->step_epochs));
  RETURN_IF_ERROR(cfg.Get("train.gamma", &o->gamma));
  RETURN_IF_ERROR(cfg.Get("train.warmup_steps", &o->warmup_steps));
  RETURN_IF_ERROR(cfg.Get("train.grad_clip", &o->grad_clip));
  RETURN_IF_ERROR(cfg.Get("train.patience", &o->patience));
  RETURN_IF_ERROR(cfg.Get("train.monitor", &o->monitor));
  RETURN_IF_ERROR(cfg.Get("train.class_weights", &o->class_weights));
  RETURN_IF_ERROR(cfg.Get("train.precision", &o->precision));
  RETURN_IF_ERROR(cfg.Get("train.batching", &o->batching));
  RETURN_IF_ERROR(cfg.Get("train.max_elements", &o->max_elements));
  RETURN_IF_ERROR(cfg.Get("train.checkpoint_every", &o->checkpoint_every));
  int64_t seed = static_cast<int64_t>(o->seed);
  RETURN_IF_ERROR(cfg.Get("train.seed", &seed));
  o->seed = static_cast<uint64_t>(seed);
  RETURN_IF_ERROR(cfg.Get("train.threads", &o->threads));
  RETURN_IF_ERROR(cfg.Get("train.progress", &o->progress));
  if (o->epochs < 1) return cfg.ValueError("train.epochs", "must be >= 1");
  if (o->batch_size < 1) return cfg.ValueError("train.batch_size", "must be >= 1");
  if (o->eval_batch_size < 1) return cfg.ValueError("train.eval_batch_size", "must be >= 1");
  if (o->optimizer != "adam" && o->optimizer != "sgd") {
    return cfg.ValueError("train.optimizer",
                          "unknown optimizer '" + o->optimizer + "' (adam, sgd)");
  }
  if (!(o->lr > 0)) return cfg.ValueError("train.lr", "must be > 0");
  if (o->weight_decay < 0) return cfg.ValueError("train.weight_decay", "must be >= 0");
  if (o->schedule != "constant" && o->schedule != "step" && o->schedule != "cosine") {
    return cfg.ValueError("train.schedule",
                          "unknown schedule '" + o->schedule + "' (constant, step, cosine)");
  }
  if (o->step_epochs < 1) return cfg.ValueError("train.step_epochs", "must be >= 1");
  if (o->warmup_steps < 0) return cfg.ValueError("train.warmup_steps", "must be >= 0");
  if (o->grad_clip < 0) return cfg.ValueError("train.grad_clip", "must be >= 0");
  if (o->patience < 0) return cfg.ValueError("train.patience", "must be >= 0");
  if (o->class_weights != "none" && o->class_weights != "balanced") {
    return cfg.ValueError("train.class_weights", "must be \"none\" or \"balanced\"");
  }
  if (o->precision != "fp32" && o->precision != "bf16") {
    return cfg.ValueError("train.precision",
                          "must be \"fp32\" or \"bf16\" (this LibTorch build is CPU-only)");
  }
  if (o->batching != "bucket" && o->batching != "pad") {
    return cfg.ValueError("train.batching", "must be \"bucket\" or \"pad\"");
  }
  if (o->max_elements < 0) return cfg.ValueError("train.max_elements", "must be >= 0");
  if (o->checkpoint_every < 0) return cfg.ValueError("train.checkpoint_every", "must be >= 0");
  if (o->threads < 0) return cfg.ValueError("train.threads", "must be >= 0");
  if (o->progress != "auto" && o->progress != "bar" && o->progress != "plain" &&
      o->progress != "off") {
    return cfg.ValueError("train.progress", "must be auto, bar, plain or off");
  }
  return Status::OK();
}

// Loss of a batch in float32. `weight`: class weights (multi-class) or pos_weight (binary).
at::Tensor TaskLoss(const torch::Tensor& out, const torch::Tensor& y, data::Task task,
                    const torch::Tensor& weight) {
  torch::Tensor logits = out.to(torch::kFloat32);
  switch (task) {
    case data::Task::kBinary: {
      auto opts = torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions();
      if (weight.defined()) opts.pos_weight(weight);
      return torch::nn::functional::binary_cross_entropy_with_logits(logits.squeeze(1),
                                                                     y.to(torch::kFloat32), opts);
    }
    case data::Task::kMulticlass: {
      auto opts = torch::nn::functional::CrossEntropyFuncOptions();
      if (weight.defined()) opts.weight(weight);
      return torch::nn::functional::cross_entropy(logits, y, opts);
    }
    case data::Task::kRegression:
      return torch::mse_loss(logits, y);
  }
  return {};
}

at::Tensor DistillLossSum(const torch::Tensor& out, const torch::Tensor& teacher, data::Task task,
                          double temperature) {
  namespace F = torch::nn::functional;
  torch::Tensor s = out.to(torch::kFloat32), t = teacher.to(torch::kFloat32);
  const double tt = temperature * temperature;
  switch (task) {
    case data::Task::kRegression:
      return torch::mse_loss(s, t, at::Reduction::Sum);
    case data::Task::kBinary:
      return tt * F::binary_cross_entropy_with_logits(
                      s / temperature, torch::sigmoid(t / temperature),
                      F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum));
    case data::Task::kMulticlass:
      return tt * F::kl_div(torch::log_softmax(s / temperature, 1),
                            torch::softmax(t / temperature, 1),
                            F::KLDivFuncOptions().reduction(torch::kSum));
  }
  return {};
}

Result<at::Tensor> BalancedClassWeights(const at::Tensor& y, data::Task task, int64_t num_classes) {
  if (task == data::Task::kRegression) {
    return InvalidArgument("train.class_weights: \"balanced\" needs a classification task");
  }
  torch::Tensor counts = torch::bincount(y, {}, num_classes).to(torch::kFloat64);
  if (task == data::Task::kBinary) {
    double pos = counts[1].item<double>(), neg = counts[0].item<double>();
    if (pos == 0)
      return FailedPrecondition("class_weights: the training data has no positive example");
    return torch::tensor({static_cast<float>(neg / pos)});
  }
  torch::Tensor w = counts.sum() / (counts.clamp_min(1) * num_classes);
  return w.to(torch::kFloat32);
}

namespace {

// Loss of a share of a global batch, summed (not averaged), and the global batch's denominator:
// sum over ranks of LossSum / Denominator is the mean TaskLoss of the whole global batch.
torch::Tensor TaskLossSum(const torch::Tensor& out, const torch::Tensor& y, data::Task task,
                          const torch::Tensor& weight) {
  torch::Tensor logits = out.to(torch::kFloat32);
  namespace F = torch::nn::functional;
  switch (task) {
    case data::Task::kBinary: {
      auto opts = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum);
      if (weight.defined()) opts.pos_weight(weight);
      return F::binary_cross_entropy_with_logits(logits.squeeze(1), y.to(torch::kFloat32), opts);
    }
    case data::Task::kMulticlass: {
      auto opts = F::CrossEntropyFuncOptions().reduction(torch::kSum);
      if (weight.defined()) opts.weight(weight);
      return F::cross_entropy(logits, y, opts);
    }
    case data::Task::kRegression:
      return torch::mse_loss(logits, y, at::Reduction::Sum);
  }
  return {};
}

double LossDenominator(const torch::Tensor& y, data::Task task, const torch::Tensor& weight) {
  if (task == data::Task::kMulticlass && weight.defined()) {
    return weight.index_select(0, y).sum().item<double>();  // weighted mean, as cross_entropy does
  }
  return static_cast<double>(y.numel());
}

// Padded sequences go through the LSTM packed; everything else is a plain forward.
torch::Tensor Forward(nn::Model& model, const data::Batch& b) {
  return b.lengths.defined() ? model.Forward(b.x, b.lengths) : model.Forward(b.x);
}

torch::Tensor IndexTensor(const std::vector<int64_t>& idx) {
  return torch::from_blob(const_cast<int64_t*>(idx.data()), {static_cast<int64_t>(idx.size())},
                          torch::kInt64);
}

// Evaluation batches: contiguous for same-size data; by size under an element budget for mixed
// sizes (the smallest example sets the budget, so a 112 px batch holds 1/16 of a 28 px one).
Result<std::vector<std::vector<int64_t>>> EvalBatches(const data::TensorData& d, int64_t batch_size,
                                                      int64_t canvas) {
  std::vector<std::vector<int64_t>> batches;
  const int64_t n = d.size();
  if (!data::MixedSizes(d)) {
    for (int64_t b = 0; b < n; b += batch_size) {
      std::vector<int64_t> v;
      for (int64_t i = b; i < std::min(n, b + batch_size); ++i) v.push_back(i);
      batches.push_back(std::move(v));
    }
    return batches;
  }
  std::vector<int64_t> bucket(n), elements(n);
  int64_t smallest = INT64_MAX;
  for (int64_t i = 0; i < n; ++i) {
    bucket[i] = canvas > 0 ? canvas : data::SizeOf(d, i);
    elements[i] = data::ElementsAt(d, canvas > 0 ? canvas : data::SizeOf(d, i));
    smallest = std::min(smallest, data::ElementsOf(d, i));
  }
  ASSIGN_OR_RETURN(
      auto sampler,
      data::BucketBatchSampler::Create(
          bucket, elements,
          {.max_elements =
               std::max(batch_size * smallest, *std::max_element(elements.begin(), elements.end())),
           .max_batch_size = batch_size,
           .shuffle = false}));
  return sampler.Epoch(0);
}

}  // namespace

Result<MetricMap> Evaluate(nn::Model& model, const data::TensorData& d, data::Task task,
                           const nlohmann::json& preprocessing, int64_t batch_size,
                           const std::string& precision) {
  return Evaluate(model, d, task, preprocessing,
                  EvalOptions{.batch_size = batch_size, .precision = precision});
}

Result<MetricMap> Evaluate(nn::Model& model, const data::TensorData& d, data::Task task,
                           const nlohmann::json& preprocessing, const EvalOptions& eo) {
  if (d.size() == 0) return FailedPrecondition("evaluation split is empty");
  if (eo.batch_size < 1) return InvalidArgument("evaluation batch size must be >= 1");
  try {
    torch::NoGradGuard no_grad;
    model.SetTraining(false);
    ASSIGN_OR_RETURN(auto batches, EvalBatches(d, eo.batch_size, eo.canvas));
    const int rank = eo.collective ? eo.collective->rank() : 0;
    const int world = eo.collective ? eo.collective->world() : 1;
    const float fill = data::BlankValue(preprocessing);
    // Each rank fills the rows of its batches; the sum over ranks gathers all of them.
    torch::Tensor all = torch::zeros({d.size(), model.config().outputs}, torch::kFloat32);
    for (size_t k = 0; k < batches.size(); ++k) {
      if (static_cast<int>(k % world) != rank) continue;
      ASSIGN_OR_RETURN(data::Batch b, data::GatherBatch(d, batches[k], eo.canvas, fill));
      torch::Tensor out;
      {
        AutocastGuard ac(eo.precision == "bf16");
        out = Forward(model, b);
      }
      all.index_copy_(0, IndexTensor(batches[k]),
                      out.to(torch::kFloat32).reshape({b.x.size(0), -1}));
    }
    if (world > 1) RETURN_IF_ERROR(eo.collective->AllReduceSum({all}));
    MetricMap m;
    if (task == data::Task::kBinary) {
      torch::Tensor p = torch::sigmoid(all.squeeze(1)).contiguous();
      std::vector<float> scores(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
      torch::Tensor yl = d.y.contiguous();
      std::vector<int64_t> labels(yl.data_ptr<int64_t>(), yl.data_ptr<int64_t>() + yl.numel());
      m = BinaryMetrics(scores, labels);
    } else if (task == data::Task::kMulticlass) {
      torch::Tensor pred = all.argmax(1).contiguous();
      torch::Tensor yl = d.y.contiguous();
      std::vector<int64_t> pv(pred.data_ptr<int64_t>(), pred.data_ptr<int64_t>() + pred.numel());
      std::vector<int64_t> yv(yl.data_ptr<int64_t>(), yl.data_ptr<int64_t>() + yl.numel());
      m = MulticlassMetrics(pv, yv);
      if (!d.sides.empty()) {
        std::map<int64_t, std::pair<int64_t, int64_t>> per_side;  // side -> (correct, total)
        for (size_t i = 0; i < pv.size(); ++i) {
          auto& c = per_side[d.sides[i]];
          c.first += pv[i] == yv[i];
          ++c.second;
        }
        for (const auto& [side, c] : per_side) {
          m["accuracy_" + std::to_string(side) + "px"] = static_cast<double>(c.first) / c.second;
        }
      }
    } else {
      double mean = preprocessing.value("mean", 0.0), sd = preprocessing.value("std", 1.0);
      torch::Tensor pred = (all * sd + mean).to(torch::kFloat64).contiguous().flatten();
      torch::Tensor act = (d.y * sd + mean).to(torch::kFloat64).contiguous().flatten();
      m = RegressionMetrics(
          std::vector<double>(pred.data_ptr<double>(), pred.data_ptr<double>() + pred.numel()),
          std::vector<double>(act.data_ptr<double>(), act.data_ptr<double>() + act.numel()));
    }
    m["loss"] = TaskLoss(all, d.y, task, {}).item<double>();
    return m;
  } catch (const c10::Error& e) {
    return InvalidArgument(std::string("evaluation failed: ") + e.what_without_backtrace());
  }
}

struct Trainer::Impl {
  TrainOptions o;
  nn::Model* model = nullptr;
  const data::LoadedData* data = nullptr;
  store::Job* job = nullptr;
  std::string ckpt_path;
  dist::Collective* coll = nullptr;
  int rank = 0, world = 1;
  std::unique_ptr<dist::GradientReducer> reducer;
  std::optional<data::BucketBatchSampler> sampler;  // mixed-size data, batching "bucket"
  int64_t canvas = 0;                               // mixed-size data, batching "pad"
  int64_t fixed_batch = 0;                          // examples per batch otherwise
  int64_t steps_per_epoch = 0;
  float fill = 0;
  std::unique_ptr<torch::optim::Optimizer> opt;
  torch::Tensor loss_weight;
  std::string monitor;

  // Progress, all of it saved in checkpoints.
  int64_t epoch = 0;           // completed epochs
  int64_t batch_in_epoch = 0;  // completed batches of the current epoch
  int64_t step = 0;            // completed optimizer steps
  double epoch_loss_sum = 0;
  int64_t epoch_samples = 0;
  double best = NAN;
  int64_t best_epoch = 0;
  int64_t bad_epochs = 0;
  bool stopped = false;
  std::vector<std::pair<std::string, torch::Tensor>> best_state;
  MetricMap last_val;

  int64_t StepsPerEpoch() const { return steps_per_epoch; }

  // The global batches of epoch e, the same on every rank.
  std::vector<std::vector<int64_t>> EpochBatches(int64_t e) const {
    if (sampler) return sampler->Epoch(e);
    std::vector<int64_t> order = EpochOrder(e);
    std::vector<std::vector<int64_t>> batches;
    for (size_t b = 0; b < order.size(); b += fixed_batch) {
      batches.emplace_back(order.begin() + b,
                           order.begin() + std::min(order.size(), b + fixed_batch));
    }
    return batches;
  }

  // This rank's contiguous share of a global batch (may be empty when the batch is small).
  std::vector<int64_t> Share(const std::vector<int64_t>& batch) const {
    size_t n = batch.size(), lo = n * rank / world, hi = n * (rank + 1) / world;
    return std::vector<int64_t>(batch.begin() + lo, batch.begin() + hi);
  }

  EvalOptions Eval() const {
    return {.batch_size = o.eval_batch_size,
            .precision = o.precision,
            .canvas = canvas,
            .collective = coll};
  }

  // Dropout on rank r of a data-parallel run: its own stream, a function of the step, so that
  // ranks do not drop the same units and a resumed run draws what the uninterrupted one drew.
  void SeedForStep() const {
    if (world == 1) return;
    uint64_t z = o.seed * 0x9E3779B97F4A7C15ull +
                 static_cast<uint64_t>(rank) * 0xBF58476D1CE4E5B9ull + static_cast<uint64_t>(step);
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(z ^ (z >> 29));
  }

  // Batch-norm running statistics (floating buffers) averaged over ranks.
  Status SyncBuffers() {
    if (world == 1) return Status::OK();
    std::vector<torch::Tensor> bufs;
    for (const auto& b : model->module().buffers()) {
      if (b.is_floating_point()) bufs.push_back(b);
    }
    return coll->AllReduceMean(bufs);
  }

  double LrAt(int64_t s, int64_t e) const {
    double f = 1;
    if (o.schedule == "step") {
      f = std::pow(o.gamma, static_cast<double>(e / o.step_epochs));
    } else if (o.schedule == "cosine") {
      double total = static_cast<double>(o.epochs * StepsPerEpoch());
      f = 0.5 * (1 + std::cos(M_PI * std::min(1.0, s / total)));
    }
    if (o.warmup_steps > 0 && s < o.warmup_steps) f *= double(s + 1) / o.warmup_steps;
    return o.lr * f;
  }

  void SetLr(double lr) {
    for (auto& g : opt->param_groups()) g.options().set_lr(lr);
  }

  std::vector<int64_t> EpochOrder(int64_t e) const {
    int64_t n = data->train.size();
    std::vector<int64_t> idx(n);
    for (int64_t i = 0; i < n; ++i) idx[i] = i;
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(e));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(idx[i], idx[rng() % static_cast<uint64_t>(i + 1)]);
    return idx;
  }

  // Optimizer state <-> named tensors. Written by hand (not torch::save) so checkpoints stay in
  // our own container and load without any unpickling.
  void SaveOptimizer(std::vector<std::pair<std::string, torch::Tensor>>* out) {
    auto params = opt->param_groups()[0].params();
    auto& state = opt->state();
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = state.find(c10::guts::to_string(params[i].unsafeGetTensorImpl()));
      if (it == state.end()) continue;
      std::string p = "opt/" + std::to_string(i) + "/";
      if (o.optimizer == "adam") {
        auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
        out->emplace_back(p + "step", torch::tensor(s.step(), torch::kInt64));
        out->emplace_back(p + "exp_avg", s.exp_avg());
        out->emplace_back(p + "exp_avg_sq", s.exp_avg_sq());
      } else {
        auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
        if (s.momentum_buffer().defined())
          out->emplace_back(p + "momentum_buffer", s.momentum_buffer());
      }
    }
  }

  Status LoadOptimizer(const nn::TensorFile& f) {
    auto params = opt->param_groups()[0].params();
    auto& state = opt->state();
    state.clear();
    for (size_t i = 0; i < params.size(); ++i) {
      std::string p = "opt/" + std::to_string(i) + "/";
      if (o.optimizer == "adam") {
        auto step_t = f.Get(p + "step");
        if (!step_t.ok()) continue;  // no state yet for this parameter
        ASSIGN_OR_RETURN(torch::Tensor m, f.Get(p + "exp_avg"));
        ASSIGN_OR_RETURN(torch::Tensor v, f.Get(p + "exp_avg_sq"));
        if (m.sizes() != params[i].sizes() || v.sizes() != params[i].sizes()) {
          return DataLoss("optimizer state for parameter " + std::to_string(i) +
                          " has the wrong shape");
        }
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->step(step_t->item<int64_t>());
        s->exp_avg(m);
        s->exp_avg_sq(v);
        state[c10::guts::to_string(params[i].unsafeGetTensorImpl())] = std::move(s);
      } else {
        auto buf = f.Get(p + "momentum_buffer");
        if (!buf.ok()) continue;
        if (buf->sizes() != params[i].sizes()) {
          return DataLoss("optimizer state for parameter " + std::to_string(i) +
                          " has the wrong shape");
        }
        auto s = std::make_unique<torch::optim::SGDParamState>();
        s->momentum_buffer(*buf);
        state[c10::guts::to_string(params[i].unsafeGetTensorImpl())] = std::move(s);
      }
    }
    return Status::OK();
  }

  Status SaveCheckpoint() {
    if (ckpt_path.empty()) return Status::OK();
    nn::TensorFile f;
    f.meta = {{"format", "ronghe.checkpoint"},
              {"epoch", epoch},
              {"batch_in_epoch", batch_in_epoch},
              {"step", step},
              {"epoch_loss_sum", epoch_loss_sum},
              {"epoch_samples", epoch_samples},
              {"best", std::isnan(best) ? nlohmann::json(nullptr) : nlohmann::json(best)},
              {"best_epoch", best_epoch},
              {"bad_epochs", bad_epochs},
              {"stopped", stopped},
              {"has_best", !best_state.empty()},
              {"options", o.ToJson()}};
    for (auto& [n, t] : model->NamedState()) f.tensors.emplace_back("model/" + n, t);
    for (auto& [n, t] : best_state) f.tensors.emplace_back("best/" + n, t);
    SaveOptimizer(&f.tensors);
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      f.tensors.emplace_back("rng", gen.get_state());
    }
    return nn::WriteTensorFile(ckpt_path, f);
  }

  Status LoadCheckpoint(const nn::TensorFile& f) {
    const auto& m = f.meta;
    try {
      if (m.at("format") != "ronghe.checkpoint") return DataLoss("not a ronghe checkpoint");
      const auto& saved = m.at("options");
      for (const char* k : {"batch_size", "optimizer", "seed", "batching", "max_elements"}) {
        if (!saved.contains(k) &&
            (std::string(k) == "batching" || std::string(k) == "max_elements"))
          continue;
        if (saved.at(k) != o.ToJson().at(k)) {
          return FailedPrecondition(std::string("checkpoint was made with a different train.") + k +
                                    " (" + saved.at(k).dump() +
                                    "); resume with the original value");
        }
      }
      epoch = m.at("epoch").get<int64_t>();
      batch_in_epoch = m.at("batch_in_epoch").get<int64_t>();
      step = m.at("step").get<int64_t>();
      epoch_loss_sum = m.at("epoch_loss_sum").get<double>();
      epoch_samples = m.at("epoch_samples").get<int64_t>();
      best = m.at("best").is_null() ? NAN : m.at("best").get<double>();
      best_epoch = m.at("best_epoch").get<int64_t>();
      bad_epochs = m.at("bad_epochs").get<int64_t>();
      stopped = m.at("stopped").get<bool>();
      std::vector<std::pair<std::string, torch::Tensor>> model_state, best_saved;
      for (const auto& [n, t] : f.tensors) {
        if (n.rfind("model/", 0) == 0) model_state.emplace_back(n.substr(6), t);
        if (n.rfind("best/", 0) == 0) best_saved.emplace_back(n.substr(5), t);
      }
      RETURN_IF_ERROR(model->LoadState(model_state));
      best_state.clear();
      for (auto& [n, t] : best_saved) best_state.emplace_back(n, t);
      RETURN_IF_ERROR(LoadOptimizer(f));
      ASSIGN_OR_RETURN(torch::Tensor rng, f.Get("rng"));
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(rng);
    } catch (const nlohmann::json::exception& e) {
      return DataLoss(std::string("malformed checkpoint: ") + e.what());
    } catch (const c10::Error& e) {
      return DataLoss(std::string("bad checkpoint state: ") + e.what_without_backtrace());
    }
    return Status::OK();
  }

  std::vector<store::MetricRecord> Records(int64_t s, const std::string& split,
                                           const MetricMap& m) {
    std::vector<store::MetricRecord> r;
    for (const auto& [k, v] : m) {
      if (std::isfinite(v)) r.push_back({s, split, k, v});
    }
    return r;
  }

  // Resume: rank 0 reads its checkpoint and every rank loads the same bytes. A fresh run starts
  // every rank from rank 0's initial weights (as DDP does).
  Status Start(bool resume, TrainResult* result) {
    std::string bytes;
    if (rank == 0 && resume && !ckpt_path.empty() && access(ckpt_path.c_str(), F_OK) == 0) {
      ASSIGN_OR_RETURN(bytes, ReadFile(ckpt_path));
    }
    if (world > 1) {
      ASSIGN_OR_RETURN(bytes, coll->BroadcastBytes(bytes));
    }
    if (!bytes.empty()) {
      const std::string source = rank == 0 ? ckpt_path : "rank 0's checkpoint";
      ASSIGN_OR_RETURN(nn::TensorFile f, nn::DecodeTensorFile(bytes, source));
      RETURN_IF_ERROR(LoadCheckpoint(f).WithContext(source));
      result->resumed = true;
      if (rank == 0)
        spdlog::info("resuming from {} at epoch {} step {}", ckpt_path, epoch + 1, step);
    } else if (world > 1) {
      std::vector<torch::Tensor> state;
      for (auto& [n, t] : model->NamedState()) state.push_back(t);
      RETURN_IF_ERROR(coll->Broadcast(state, 0));
    }
    return Status::OK();
  }

  // One optimizer step on global batch `batch`; *loss_out: the global batch's mean loss.
  Status Step(const std::vector<int64_t>& batch, double* loss_out) {
    const auto& tr = data->train;
    SetLr(LrAt(step, epoch));
    opt->zero_grad();
    SeedForStep();
    if (world == 1) {
      ASSIGN_OR_RETURN(data::Batch in, data::GatherBatch(tr, batch, canvas, fill));
      torch::Tensor idx = IndexTensor(batch);
      torch::Tensor y = tr.y.index_select(0, idx);
      torch::Tensor loss;
      {
        AutocastGuard ac(o.precision == "bf16");
        torch::Tensor out = Forward(*model, in);
        loss = TaskLoss(out, y, data->task, loss_weight);
        if (tr.teacher.defined()) {
          torch::Tensor soft = DistillLossSum(out, tr.teacher.index_select(0, idx), data->task,
                                              o.distill_temperature);
          loss = (1 - o.distill_alpha) * loss +
                 o.distill_alpha * soft / LossDenominator(y, data->task, loss_weight);
        }
      }
      *loss_out = loss.item<double>();
      if (!std::isfinite(*loss_out)) return Diverged(*loss_out);
      loss.backward();
    } else {
      const double denom =
          LossDenominator(tr.y.index_select(0, IndexTensor(batch)), data->task, loss_weight);
      std::vector<int64_t> share = Share(batch);
      torch::Tensor sum = torch::zeros({1}, torch::kFloat64);
      reducer->Prepare();
      if (!share.empty()) {
        ASSIGN_OR_RETURN(data::Batch in, data::GatherBatch(tr, share, canvas, fill));
        torch::Tensor idx = IndexTensor(share);
        torch::Tensor y = tr.y.index_select(0, idx);
        torch::Tensor loss;
        {
          AutocastGuard ac(o.precision == "bf16");
          torch::Tensor out = Forward(*model, in);
          loss = TaskLossSum(out, y, data->task, loss_weight);
          if (tr.teacher.defined()) {
            loss = (1 - o.distill_alpha) * loss +
                   o.distill_alpha * DistillLossSum(out, tr.teacher.index_select(0, idx),
                                                    data->task, o.distill_temperature);
          }
        }
        sum[0] = loss.item<double>();
        // The reducer averages over ranks, hence x world: the result is sum over ranks / denom.
        (loss * (world / denom)).backward();
      }
      RETURN_IF_ERROR(reducer->Finish());
      RETURN_IF_ERROR(coll->AllReduceSum({sum}));
      *loss_out = sum[0].item<double>() / denom;
      if (!std::isfinite(*loss_out)) return Diverged(*loss_out);
    }
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->Parameters(), o.grad_clip);
    opt->step();
    ++step;
    return Status::OK();
  }

  Status Diverged(double loss) const {
    return FailedPrecondition("training diverged: loss is " + std::to_string(loss) + " at epoch " +
                              std::to_string(epoch + 1) + " step " + std::to_string(step) +
                              "; lower train.lr or set train.grad_clip");
  }

  Result<TrainResult> Run(bool resume) {
    TrainResult result;
    result.world = world;
    RETURN_IF_ERROR(Start(resume, &result));
    const int64_t spe = StepsPerEpoch();
    double loop_seconds = 0;
    int64_t loop_samples = 0;
    while (epoch < o.epochs && !stopped) {
      model->SetTraining(true);
      std::vector<std::vector<int64_t>> batches = EpochBatches(epoch);
      Progress progress(rank == 0 ? o.progress : "off", epoch + 1, o.epochs, spe);
      double t0 = Now();
      int64_t samples_this_run = 0;
      for (int64_t b = batch_in_epoch; b < spe; ++b) {
        double loss = 0;
        RETURN_IF_ERROR(Step(batches[b], &loss));
        const auto count = static_cast<int64_t>(batches[b].size());
        batch_in_epoch = b + 1;
        epoch_loss_sum += loss * count;
        epoch_samples += count;
        samples_this_run += count;
        progress.Update(b + 1, samples_this_run, epoch_loss_sum / epoch_samples);
        if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && batch_in_epoch < spe) {
          RETURN_IF_ERROR(SaveCheckpoint());
        }
      }
      loop_seconds += Now() - t0;
      loop_samples += samples_this_run;
      RETURN_IF_ERROR(SyncBuffers());
      // Epoch end: validate, record, early-stopping bookkeeping, checkpoint.
      MetricMap train_m = {{"loss", epoch_loss_sum / std::max<int64_t>(epoch_samples, 1)},
                           {"lr", LrAt(step == 0 ? 0 : step - 1, epoch)}};
      ++epoch;
      batch_in_epoch = 0;
      epoch_loss_sum = 0;
      epoch_samples = 0;
      MetricMap val_m;
      if (data->val.size() > 0) {
        ASSIGN_OR_RETURN(val_m,
                         Evaluate(*model, data->val, data->task, data->preprocessing, Eval()));
        if (!val_m.count(monitor)) {
          return InvalidArgument("train.monitor: no validation metric '" + monitor + "' for a " +
                                 data::TaskName(data->task) + " task");
        }
        double v = val_m[monitor];
        bool better = std::isnan(best) || (HigherIsBetter(monitor) ? v > best : v < best);
        if (better) {
          best = v;
          best_epoch = epoch;
          bad_epochs = 0;
          if (o.patience > 0) {
            best_state.clear();
            for (auto& [nm, t] : model->NamedState())
              best_state.emplace_back(nm, t.detach().clone());
          }
        } else if (o.patience > 0 && ++bad_epochs >= o.patience) {
          stopped = true;
        }
      }
      last_val = val_m;
      if (rank == 0) {
        spdlog::info("epoch {}/{} train loss {:.4f}{}", epoch, o.epochs, train_m["loss"],
                     val_m.empty()       ? std::string()
                     : monitor == "loss" ? fmt::format(" val loss {:.4f}", val_m["loss"])
                                         : fmt::format(" val {} {:.4f} loss {:.4f}", monitor,
                                                       val_m[monitor], val_m["loss"]));
      }
      if (job) {
        auto recs = Records(epoch, "train", train_m);
        auto vr = Records(epoch, "val", val_m);
        recs.insert(recs.end(), vr.begin(), vr.end());
        RETURN_IF_ERROR(job->Metrics(recs));
      }
      RETURN_IF_ERROR(SaveCheckpoint());
    }
    if (o.patience > 0 && !best_state.empty()) {
      RETURN_IF_ERROR(model->LoadState(best_state).WithContext("restoring the best epoch"));
      if (rank == 0)
        spdlog::info("restored weights of epoch {} (best val {} {:.4f})", best_epoch, monitor,
                     best);
      ASSIGN_OR_RETURN(last_val,
                       Evaluate(*model, data->val, data->task, data->preprocessing, Eval()));
    }
    result.stopped_early = stopped;
    result.val = last_val;
    ASSIGN_OR_RETURN(result.test,
                     Evaluate(*model, data->test, data->task, data->preprocessing, Eval()));
    if (job) RETURN_IF_ERROR(job->Metrics(Records(epoch, "test", result.test)));
    result.epochs_completed = epoch;
    result.steps = step;
    result.train_seconds = loop_seconds;
    result.samples_per_second = loop_seconds > 0 ? loop_samples / loop_seconds : 0;
    return result;
  }
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

Result<std::unique_ptr<Trainer>> Trainer::Create(const TrainOptions& o, nn::Model* model,
                                                 const data::LoadedData* data, store::Job* job,
                                                 std::string checkpoint_path,
                                                 dist::Collective* collective) {
  if (!model || !data) return InvalidArgument("trainer: model and data are required");
  if (data->train.size() == 0) return FailedPrecondition("trainer: the training split is empty");
  if (data->train.teacher.defined()) {
    const at::Tensor& t = data->train.teacher;
    if (t.dim() != 2 || t.size(0) != data->train.size() || t.size(1) != model->config().outputs) {
      return InvalidArgument(
          "trainer: the teacher's outputs must be [" + std::to_string(data->train.size()) + ", " +
          std::to_string(model->config().outputs) + "], got " + c10::str(t.sizes()));
    }
    if (!(o.distill_alpha >= 0 && o.distill_alpha <= 1))
      return InvalidArgument("distill.alpha must lie in [0, 1]");
    if (!(o.distill_temperature > 0)) return InvalidArgument("distill.temperature must be > 0");
  }
  auto impl = std::make_unique<Impl>();
  impl->o = o;
  impl->model = model;
  impl->data = data;
  impl->job = job;
  impl->ckpt_path = std::move(checkpoint_path);
  impl->monitor = o.monitor.empty() ? "loss" : o.monitor;
  impl->coll = collective;
  impl->rank = collective ? collective->rank() : 0;
  impl->world = collective ? collective->world() : 1;
  const data::TensorData& tr = data->train;
  impl->fill = data::BlankValue(data->preprocessing);
  if (data::MixedSizes(tr) && o.batching == "bucket") {
    std::vector<int64_t> elements(tr.size()), bucket_of(tr.size());
    int64_t largest = 0;
    for (int64_t i = 0; i < tr.size(); ++i) {
      largest = std::max(largest, elements[i] = data::ElementsOf(tr, i));
      bucket_of[i] = data::SizeOf(tr, i);
    }
    data::BucketingOptions bo{
        .max_elements = o.max_elements > 0 ? o.max_elements : o.batch_size * largest,
        .max_batch_size = o.max_elements > 0 ? 0 : o.batch_size,
        .shuffle = true,
        .seed = o.seed};
    auto sampler = data::BucketBatchSampler::Create(std::move(bucket_of), std::move(elements), bo);
    if (!sampler.ok()) return InvalidArgument("train.max_elements: " + sampler.status().message());
    impl->sampler.emplace(std::move(*sampler));
  } else {
    if (data::MixedSizes(tr)) impl->canvas = data::MaxSize(tr);
    int64_t per = data::ElementsAt(tr, impl->canvas);
    if (o.max_elements > 0 && o.max_elements < per) {
      return InvalidArgument("train.max_elements: " + std::to_string(o.max_elements) +
                             " is less than one example (" + std::to_string(per) + " elements)");
    }
    impl->fixed_batch = o.max_elements > 0 ? o.max_elements / per : o.batch_size;
  }
  impl->steps_per_epoch = static_cast<int64_t>(impl->EpochBatches(0).size());
  if (impl->world > 1) {
    impl->reducer = std::make_unique<dist::GradientReducer>(collective, model->Parameters(),
                                                            collective->bucket_bytes());
  }
  // LibTorch's default counts physical cores, which leaves one of two hyperthreads idle on the
  // 2-vCPU machines here (measured: 20-40% slower convolutions); use every logical CPU instead.
  torch::set_num_threads(o.threads > 0 ? o.threads
                                       : std::max(1u, std::thread::hardware_concurrency()));
  try {
    if (o.optimizer == "adam") {
      impl->opt = std::make_unique<torch::optim::Adam>(
          model->Parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
    } else {
      impl->opt = std::make_unique<torch::optim::SGD>(
          model->Parameters(),
          torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
    }
    if (o.class_weights == "balanced") {
      ASSIGN_OR_RETURN(impl->loss_weight,
                       BalancedClassWeights(data->train.y, data->task, data->num_classes));
    }
  } catch (const c10::Error& e) {
    return InvalidArgument(std::string("trainer: ") + e.what_without_backtrace());
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

Result<TrainResult> Trainer::Run(bool resume) {
  try {
    return impl_->Run(resume);
  } catch (const c10::Error& e) {
    return InvalidArgument(std::string("training failed: ") + e.what_without_backtrace());
  }
}

}  // namespace ronghe::train
