#include "ronghe/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

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
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", long(t / 3600), long(t / 60 % 60), long(t % 60));
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
                   long(epoch_), long(epochs_), bar.c_str(), int(total_ ? 100 * done / total_ : 100),
                   long(done), long(total_), rate, FormatDuration(eta).c_str(), loss);
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
  return {{"epochs", epochs},         {"batch_size", batch_size},   {"eval_batch_size", eval_batch_size},
          {"optimizer", optimizer},   {"lr", lr},                   {"momentum", momentum},
          {"weight_decay", weight_decay}, {"schedule", schedule},   {"step_epochs", step_epochs},
          {"gamma", gamma},           {"warmup_steps", warmup_steps}, {"grad_clip", grad_clip},
          {"patience", patience},     {"monitor", monitor},         {"class_weights", class_weights},
          {"precision", precision},   {"checkpoint_every", checkpoint_every}, {"seed", seed},
          {"threads", threads}};
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
    return cfg.ValueError("train.optimizer", "unknown optimizer '" + o->optimizer + "' (adam, sgd)");
  }
  if (!(o->lr > 0)) return cfg.ValueError("train.lr", "must be > 0");
  if (o->weight_decay < 0) return cfg.ValueError("train.weight_decay", "must be >= 0");
  if (o->schedule != "constant" && o->schedule != "step" && o->schedule != "cosine") {
    return cfg.ValueError("train.schedule", "unknown schedule '" + o->schedule + "' (constant, step, cosine)");
  }
  if (o->step_epochs < 1) return cfg.ValueError("train.step_epochs", "must be >= 1");
  if (o->warmup_steps < 0) return cfg.ValueError("train.warmup_steps", "must be >= 0");
  if (o->grad_clip < 0) return cfg.ValueError("train.grad_clip", "must be >= 0");
  if (o->patience < 0) return cfg.ValueError("train.patience", "must be >= 0");
  if (o->class_weights != "none" && o->class_weights != "balanced") {
    return cfg.ValueError("train.class_weights", "must be \"none\" or \"balanced\"");
  }
  if (o->precision != "fp32" && o->precision != "bf16") {
    return cfg.ValueError("train.precision", "must be \"fp32\" or \"bf16\" (this LibTorch build is CPU-only)");
  }
  if (o->checkpoint_every < 0) return cfg.ValueError("train.checkpoint_every", "must be >= 0");
  if (o->threads < 0) return cfg.ValueError("train.threads", "must be >= 0");
  if (o->progress != "auto" && o->progress != "bar" && o->progress != "plain" && o->progress != "off") {
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
      return torch::nn::functional::binary_cross_entropy_with_logits(
          logits.squeeze(1), y.to(torch::kFloat32), opts);
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

Result<at::Tensor> BalancedClassWeights(const at::Tensor& y, data::Task task, int64_t num_classes) {
  if (task == data::Task::kRegression) {
    return InvalidArgument("train.class_weights: \"balanced\" needs a classification task");
  }
  torch::Tensor counts = torch::bincount(y, {}, num_classes).to(torch::kFloat64);
  if (task == data::Task::kBinary) {
    double pos = counts[1].item<double>(), neg = counts[0].item<double>();
    if (pos == 0) return FailedPrecondition("class_weights: the training data has no positive example");
    return torch::tensor({static_cast<float>(neg / pos)});
  }
  torch::Tensor w = counts.sum() / (counts.clamp_min(1) * num_classes);
  return w.to(torch::kFloat32);
}

Result<MetricMap> Evaluate(nn::Model& model, const data::TensorData& d, data::Task task,
                           const nlohmann::json& preprocessing, int64_t batch_size,
                           const std::string& precision) {
  if (d.size() == 0) return FailedPrecondition("evaluation split is empty");
  try {
    torch::NoGradGuard no_grad;
    model.SetTraining(false);
    std::vector<torch::Tensor> outs;
    double loss_sum = 0;
    for (int64_t b = 0; b < d.size(); b += batch_size) {
      int64_t n = std::min(batch_size, d.size() - b);
      torch::Tensor x = d.x.narrow(0, b, n), y = d.y.narrow(0, b, n);
      torch::Tensor out;
      {
        AutocastGuard ac(precision == "bf16");
        out = model.Forward(x);
      }
      out = out.to(torch::kFloat32);
      loss_sum += TaskLoss(out, y, task, {}).item<double>() * n;
      outs.push_back(out);
    }
    torch::Tensor all = torch::cat(outs);
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
      m = MulticlassMetrics(std::vector<int64_t>(pred.data_ptr<int64_t>(), pred.data_ptr<int64_t>() + pred.numel()),
                            std::vector<int64_t>(yl.data_ptr<int64_t>(), yl.data_ptr<int64_t>() + yl.numel()));
    } else {
      double mean = preprocessing.value("mean", 0.0), sd = preprocessing.value("std", 1.0);
      torch::Tensor pred = (all * sd + mean).to(torch::kFloat64).contiguous().flatten();
      torch::Tensor act = (d.y * sd + mean).to(torch::kFloat64).contiguous().flatten();
      m = RegressionMetrics(std::vector<double>(pred.data_ptr<double>(), pred.data_ptr<double>() + pred.numel()),
                            std::vector<double>(act.data_ptr<double>(), act.data_ptr<double>() + act.numel()));
    }
    m["loss"] = loss_sum / d.size();
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
  std::unique_ptr<torch::optim::Optimizer> opt;
  torch::Tensor loss_weight;
  std::string monitor;

  // Progress, all of it saved in checkpoints.
  int64_t epoch = 0;            // completed epochs
  int64_t batch_in_epoch = 0;   // completed batches of the current epoch
  int64_t step = 0;             // completed optimizer steps
  double epoch_loss_sum = 0;
  int64_t epoch_samples = 0;
  double best = NAN;
  int64_t best_epoch = 0;
  int64_t bad_epochs = 0;
  bool stopped = false;
  std::vector<std::pair<std::string, torch::Tensor>> best_state;
  MetricMap last_val;

  int64_t StepsPerEpoch() const { return (data->train.size() + o.batch_size - 1) / o.batch_size; }

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
    for (int64_t i = n - 1; i > 0; --i) std::swap(idx[i], idx[rng() % static_cast<uint64_t>(i + 1)]);
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
        if (s.momentum_buffer().defined()) out->emplace_back(p + "momentum_buffer", s.momentum_buffer());
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
          return DataLoss("optimizer state for parameter " + std::to_string(i) + " has the wrong shape");
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
          return DataLoss("optimizer state for parameter " + std::to_string(i) + " has the wrong shape");
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
    f.meta = {{"format", "ronghe.checkpoint"}, {"epoch", epoch}, {"batch_in_epoch", batch_in_epoch},
              {"step", step}, {"epoch_loss_sum", epoch_loss_sum}, {"epoch_samples", epoch_samples},
              {"best", std::isnan(best) ? nlohmann::json(nullptr) : nlohmann::json(best)},
              {"best_epoch", best_epoch}, {"bad_epochs", bad_epochs}, {"stopped", stopped},
              {"has_best", !best_state.empty()}, {"options", o.ToJson()}};
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
      for (const char* k : {"batch_size", "optimizer", "seed"}) {
        if (saved.at(k) != o.ToJson().at(k)) {
          return FailedPrecondition(std::string("checkpoint was made with a different train.") + k +
                                    " (" + saved.at(k).dump() + "); resume with the original value");
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

  std::vector<store::MetricRecord> Records(int64_t s, const std::string& split, const MetricMap& m) {
    std::vector<store::MetricRecord> r;
    for (const auto& [k, v] : m) {
      if (std::isfinite(v)) r.push_back({s, split, k, v});
    }
    return r;
  }

  Result<TrainResult> Run(bool resume) {
    TrainResult result;
    if (resume && !ckpt_path.empty() && access(ckpt_path.c_str(), F_OK) == 0) {
      ASSIGN_OR_RETURN(nn::TensorFile f, nn::ReadTensorFile(ckpt_path));
      RETURN_IF_ERROR(LoadCheckpoint(f).WithContext(ckpt_path));
      result.resumed = true;
      spdlog::info("resuming from {} at epoch {} step {}", ckpt_path, epoch + 1, step);
    }
    const auto& tr = data->train;
    const int64_t n = tr.size();
    const int64_t spe = StepsPerEpoch();
    double loop_seconds = 0;
    int64_t loop_samples = 0;
    while (epoch < o.epochs && !stopped) {
      model->SetTraining(true);
      std::vector<int64_t> order = EpochOrder(epoch);
      Progress progress(o.progress, epoch + 1, o.epochs, spe);
      double t0 = Now();
      int64_t samples_this_run = 0;
      for (int64_t b = batch_in_epoch; b < spe; ++b) {
        int64_t begin = b * o.batch_size, count = std::min(o.batch_size, n - begin);
        torch::Tensor idx = torch::from_blob(order.data() + begin, {count}, torch::kInt64);
        torch::Tensor x = tr.x.index_select(0, idx), y = tr.y.index_select(0, idx);
        SetLr(LrAt(step, epoch));
        opt->zero_grad();
        torch::Tensor loss;
        {
          AutocastGuard ac(o.precision == "bf16");
          torch::Tensor out = model->Forward(x);
          loss = TaskLoss(out, y, data->task, loss_weight);
        }
        if (!std::isfinite(loss.item<double>())) {
          return FailedPrecondition("training diverged: loss is " + std::to_string(loss.item<double>()) +
                                    " at epoch " + std::to_string(epoch + 1) + " step " +
                                    std::to_string(step) + "; lower train.lr or set train.grad_clip");
        }
        loss.backward();
        if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->Parameters(), o.grad_clip);
        opt->step();
        ++step;
        batch_in_epoch = b + 1;
        epoch_loss_sum += loss.item<double>() * count;
        epoch_samples += count;
        samples_this_run += count;
        progress.Update(b + 1, samples_this_run, epoch_loss_sum / epoch_samples);
        if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && batch_in_epoch < spe) {
          RETURN_IF_ERROR(SaveCheckpoint());
        }
      }
      loop_seconds += Now() - t0;
      loop_samples += samples_this_run;
      // Epoch end: validate, record, early-stopping bookkeeping, checkpoint.
      MetricMap train_m = {{"loss", epoch_loss_sum / std::max<int64_t>(epoch_samples, 1)},
                           {"lr", LrAt(step == 0 ? 0 : step - 1, epoch)}};
      ++epoch;
      batch_in_epoch = 0;
      epoch_loss_sum = 0;
      epoch_samples = 0;
      MetricMap val_m;
      if (data->val.size() > 0) {
        ASSIGN_OR_RETURN(val_m, Evaluate(*model, data->val, data->task, data->preprocessing,
                                         o.eval_batch_size, o.precision));
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
            for (auto& [nm, t] : model->NamedState()) best_state.emplace_back(nm, t.detach().clone());
          }
        } else if (o.patience > 0 && ++bad_epochs >= o.patience) {
          stopped = true;
        }
      }
      last_val = val_m;
      spdlog::info("epoch {}/{} train loss {:.4f}{}", epoch, o.epochs, train_m["loss"],
                   val_m.empty()        ? std::string()
                   : monitor == "loss" ? fmt::format(" val loss {:.4f}", val_m["loss"])
                                       : fmt::format(" val {} {:.4f} loss {:.4f}", monitor, val_m[monitor], val_m["loss"]));
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
      spdlog::info("restored weights of epoch {} (best val {} {:.4f})", best_epoch, monitor, best);
      ASSIGN_OR_RETURN(last_val, Evaluate(*model, data->val, data->task, data->preprocessing,
                                          o.eval_batch_size, o.precision));
    }
    result.stopped_early = stopped;
    result.val = last_val;
    ASSIGN_OR_RETURN(result.test, Evaluate(*model, data->test, data->task, data->preprocessing,
                                           o.eval_batch_size, o.precision));
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
                                                 std::string checkpoint_path) {
  if (!model || !data) return InvalidArgument("trainer: model and data are required");
  if (data->train.size() == 0) return FailedPrecondition("trainer: the training split is empty");
  auto impl = std::make_unique<Impl>();
  impl->o = o;
  impl->model = model;
  impl->data = data;
  impl->job = job;
  impl->ckpt_path = std::move(checkpoint_path);
  impl->monitor = o.monitor.empty() ? "loss" : o.monitor;
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
      ASSIGN_OR_RETURN(impl->loss_weight, BalancedClassWeights(data->train.y, data->task, data->num_classes));
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
