#include "ronghe/edge/runtime.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "ronghe/edge/kernels.h"

namespace ronghe::edge {

struct Model::Linear {
  int64_t rows = 0, cols = 0;
  const float* w = nullptr;          // fp32
  const int8_t* q = nullptr;         // int8
  const float* row_scale = nullptr;  // int8
  float act_scale = 0;               // int8
  const float* bias = nullptr;
};

namespace {

// Per-thread buffers: grown once, then reused by every call (no allocation on the hot path).
struct Scratch {
  std::vector<float> a, b, gi, gh, h, c;
  std::vector<int8_t> qx;
};
thread_local Scratch t_scratch;
// Set only while Observe runs on this thread.
thread_local ActivationStats* t_observe = nullptr;

template <typename T>
T* Grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(path + ": cannot open the edge model");
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f.good() && !f.eof()) return IoError(path + ": read failed");
  return FromBytes(ss.str(), path);
}

Result<std::unique_ptr<Model>> Model::FromBytes(const std::string& bytes,
                                                const std::string& source) {
  std::unique_ptr<Model> m(new Model());
  ASSIGN_OR_RETURN(m->artifact_, Parse(bytes, source));
  RETURN_IF_ERROR(m->Init(source));
  return m;
}

Status Model::Init(const std::string& source) {
  header_ = artifact_.header;
  auto bad = [&](const std::string& why) { return DataLoss(source + ": " + why); };
  try {
    kind_ = header_.at("kind").get<std::string>();
    precision_ = header_.at("precision").get<std::string>();
    task_ = header_.at("task").get<std::string>();
    steps_ = header_.at("steps").get<int64_t>();
    features_ = header_.at("features").get<int64_t>();
    outputs_ = header_.at("outputs").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("header: ") + e.what());
  }
  if (kind_ != "mlp" && kind_ != "lstm" && kind_ != "gru")
    return bad("unsupported model kind '" + kind_ + "' (mlp, lstm, gru)");
  if (precision_ != "fp32" && precision_ != "int8")
    return bad("unsupported precision '" + precision_ + "' (fp32, int8)");
  if (steps_ < 1 || features_ < 1 || outputs_ < 1 || steps_ * features_ > (1 << 24))
    return bad("steps, features and outputs must be positive");
  const nlohmann::json scales = header_.value("act_scales", nlohmann::json::object());

  // A matrix by name, with its shape checked against what the layer needs.
  auto linear = [&](const std::string& w, const std::string& b, int64_t rows,
                    int64_t cols) -> Result<Linear> {
    Linear l;
    l.rows = rows;
    l.cols = cols;
    auto it = artifact_.tensors.find(w);
    if (it == artifact_.tensors.end()) return bad("tensor '" + w + "' is missing");
    if (it->second.shape != std::vector<int64_t>{rows, cols}) {
      return bad("tensor '" + w + "' has the wrong shape (needs " + std::to_string(rows) + "x" +
                 std::to_string(cols) + ")");
    }
    // An int8 model may keep some matrices in fp32 (the exporter keeps the output layer).
    if (it->second.dtype == "f32") {
      l.w = reinterpret_cast<const float*>(it->second.data.data());
    } else {
      if (precision_ != "int8" || it->second.dtype != "i8")
        return bad("tensor '" + w + "' must be f32 in an fp32 model");
      l.q = reinterpret_cast<const int8_t*>(it->second.data.data());
      auto s = artifact_.tensors.find(w + ".scale");
      if (s == artifact_.tensors.end() || s->second.dtype != "f32" ||
          s->second.shape != std::vector<int64_t>{rows})
        return bad("tensor '" + w + ".scale' is missing or not f32 [" + std::to_string(rows) + "]");
      l.row_scale = reinterpret_cast<const float*>(s->second.data.data());
      if (!scales.contains(w) || !scales[w].is_number() || !(scales[w].get<double>() > 0))
        return bad("act_scales." + w + " is missing or not positive");
      l.act_scale = scales[w].get<float>();
    }
    auto bi = artifact_.tensors.find(b);
    if (bi == artifact_.tensors.end() || bi->second.dtype != "f32" ||
        bi->second.shape != std::vector<int64_t>{rows})
      return bad("tensor '" + b + "' is missing or not f32 [" + std::to_string(rows) + "]");
    l.bias = reinterpret_cast<const float*>(bi->second.data.data());
    parameters_ += rows * cols + rows;
    linear_names_.push_back(w);
    return l;
  };

  if (kind_ == "mlp") {
    std::vector<int64_t> widths;
    try {
      widths = header_.at("hidden").get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception& e) {
      return bad(std::string("header.hidden: ") + e.what());
    }
    widths.push_back(outputs_);
    int64_t prev = steps_ * features_;
    for (size_t i = 0; i < widths.size(); ++i) {
      if (widths[i] < 1) return bad("header.hidden: widths must be positive");
      const std::string p = "dense." + std::to_string(i);
      ASSIGN_OR_RETURN(Linear l, linear(p + ".weight", p + ".bias", widths[i], prev));
      linears_.push_back(l);
      prev = widths[i];
    }
    hidden_ = prev;
  } else {
    try {
      hidden_ = header_.at("hidden").get<int64_t>();
      layers_ = header_.at("layers").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      return bad(std::string("header: ") + e.what());
    }
    if (hidden_ < 1 || layers_ < 1 || hidden_ > 65536 || layers_ > 64)
      return bad("hidden and layers must be positive");
    const int64_t gates = kind_ == "lstm" ? 4 : 3;
    for (int64_t l = 0; l < layers_; ++l) {
      const std::string p = "rnn." + std::to_string(l);
      const int64_t in = l == 0 ? features_ : hidden_;
      ASSIGN_OR_RETURN(Linear ih, linear(p + ".w_ih", p + ".b_ih", gates * hidden_, in));
      ASSIGN_OR_RETURN(Linear hh, linear(p + ".w_hh", p + ".b_hh", gates * hidden_, hidden_));
      linears_.push_back(ih);
      linears_.push_back(hh);
    }
    ASSIGN_OR_RETURN(Linear proj, linear("proj.weight", "proj.bias", outputs_, hidden_));
    linears_.push_back(proj);
  }

  // Raw inputs are standardised with the training statistics when the artifact has them.
  if (header_.contains("input") && header_["input"].contains("mean")) {
    try {
      auto mean = header_["input"].at("mean").get<std::vector<double>>();
      auto sd = header_["input"].at("std").get<std::vector<double>>();
      if (static_cast<int64_t>(mean.size()) != features_ || sd.size() != mean.size())
        return bad("header.input: one mean and std per feature are needed");
      for (size_t i = 0; i < mean.size(); ++i) {
        if (!(sd[i] > 0) || !std::isfinite(mean[i])) return bad("header.input: bad statistics");
        in_mean_.push_back(static_cast<float>(mean[i]));
        in_inv_std_.push_back(static_cast<float>(1.0 / sd[i]));
      }
    } catch (const nlohmann::json::exception& e) {
      return bad(std::string("header.input: ") + e.what());
    }
  }
  if (task_ == "regression" && header_.contains("output") && header_["output"].contains("std")) {
    out_mean_ = header_["output"].value("mean", 0.0f);
    out_std_ = header_["output"].value("std", 1.0f);
    denormalise_ = true;
  }
  return Status::OK();
}

void Model::Apply(const Linear& l, const float* x, float* y) const {
  if (t_observe != nullptr) t_observe->Add(static_cast<size_t>(&l - linears_.data()), x, l.cols);
  if (l.w) {
    MatVecF32(l.w, x, l.bias, l.rows, l.cols, y);
  } else {
    int8_t* qx = Grow(t_scratch.qx, static_cast<size_t>(l.cols));
    QuantizeActivations(x, l.cols, l.act_scale, qx);
    MatVecI8(l.q, qx, l.row_scale, l.act_scale, l.bias, l.rows, l.cols, y);
  }
}

void Model::Run(const float* x, float* out) const {
  Scratch& s = t_scratch;
  if (kind_ == "mlp") {
    size_t widest = static_cast<size_t>(steps_ * features_);
    for (const Linear& l : linears_) widest = std::max(widest, static_cast<size_t>(l.rows));
    float* a = Grow(s.a, widest);
    float* b = Grow(s.b, widest);
    const float* in = x;
    for (size_t i = 0; i < linears_.size(); ++i) {
      const bool last = i + 1 == linears_.size();
      float* y = last ? out : (in == a ? b : a);
      Apply(linears_[i], in, y);
      if (!last)
        for (int64_t r = 0; r < linears_[i].rows; ++r) y[r] = y[r] > 0 ? y[r] : 0;
      in = y;
    }
    return;
  }
  const int64_t H = hidden_, G = kind_ == "lstm" ? 4 : 3;
  float* gi = Grow(s.gi, static_cast<size_t>(G * H));
  float* gh = Grow(s.gh, static_cast<size_t>(G * H));
  float* h = Grow(s.h, static_cast<size_t>(layers_ * H));
  float* c = Grow(s.c, static_cast<size_t>(layers_ * H));
  std::fill(h, h + layers_ * H, 0.0f);
  std::fill(c, c + layers_ * H, 0.0f);
  for (int64_t t = 0; t < steps_; ++t) {
    const float* in = x + t * features_;
    for (int64_t l = 0; l < layers_; ++l) {
      float* hl = h + l * H;
      Apply(linears_[2 * l], in, gi);
      Apply(linears_[2 * l + 1], hl, gh);
      if (kind_ == "lstm") {
        float* cl = c + l * H;
        // PyTorch's gate order: input, forget, cell, output.
        for (int64_t j = 0; j < H; ++j) {
          const float ig = Sigmoid(gi[j] + gh[j]);
          const float fg = Sigmoid(gi[H + j] + gh[H + j]);
          const float gg = std::tanh(gi[2 * H + j] + gh[2 * H + j]);
          const float og = Sigmoid(gi[3 * H + j] + gh[3 * H + j]);
          cl[j] = fg * cl[j] + ig * gg;
          hl[j] = og * std::tanh(cl[j]);
        }
      } else {
        // PyTorch's GRU: reset, update, new; the reset gate scales W_hn h + b_hn.
        for (int64_t j = 0; j < H; ++j) {
          const float r = Sigmoid(gi[j] + gh[j]);
          const float z = Sigmoid(gi[H + j] + gh[H + j]);
          const float n = std::tanh(gi[2 * H + j] + r * gh[2 * H + j]);
          hl[j] = (1 - z) * n + z * hl[j];
        }
      }
      in = hl;
    }
  }
  Apply(linears_.back(), h + (layers_ - 1) * H, out);
}

Status Model::PredictStandardised(const float* x, int64_t n, float* out) const {
  if (n != input_size()) {
    return InvalidArgument("the model takes " + std::to_string(steps_) + " steps of " +
                           std::to_string(features_) + " features (" +
                           std::to_string(input_size()) + " values), got " + std::to_string(n));
  }
  Run(x, out);
  return Status::OK();
}

void ActivationStats::Add(size_t matrix, const float* x, int64_t n) {
  if (max_abs.size() <= matrix) {
    max_abs.resize(matrix + 1, 0.0f);
    hist.resize(matrix + 1);
  }
  if (!histogram) {
    float& m = max_abs[matrix];
    for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
    return;
  }
  std::vector<double>& h = hist[matrix];
  if (h.empty()) h.assign(kBins, 0.0);
  const float top = max_abs[matrix];
  if (!(top > 0)) return;
  for (int64_t i = 0; i < n; ++i) {
    auto b = static_cast<int64_t>(std::fabs(x[i]) / top * kBins);
    h[static_cast<size_t>(std::clamp<int64_t>(b, 0, kBins - 1))] += 1;
  }
}

float ActivationStats::Scale(size_t matrix) const {
  const float top = matrix < max_abs.size() ? max_abs[matrix] : 0.0f;
  if (!(top > 0)) return 1.0f / 127;
  if (matrix >= hist.size() || hist[matrix].empty()) return top / 127;
  // The clip threshold T that minimises the expected squared error over the observed values:
  // values above T are clipped to it, values below are rounded to steps of T / 127 (uniform
  // rounding error: step^2 / 12). TensorRT's and PyTorch's "MSE" calibration.
  const std::vector<double>& h = hist[matrix];
  double best = -1, best_t = top;
  for (int64_t k = kBins / 16; k <= kBins; ++k) {
    const double t = top * static_cast<double>(k) / kBins, step = t / 127;
    double err = 0, below = 0;
    for (int64_t b = 0; b < kBins; ++b) {
      const double centre = top * (static_cast<double>(b) + 0.5) / kBins;
      if (centre > t) {
        err += h[b] * (centre - t) * (centre - t);
      } else {
        below += h[b];
      }
    }
    err += below * step * step / 12;
    if (best < 0 || err < best) {
      best = err;
      best_t = t;
    }
  }
  return static_cast<float>(best_t / 127);
}

Status Model::Observe(const float* x, int64_t n, ActivationStats* stats) const {
  std::vector<float> out(static_cast<size_t>(outputs_));
  t_observe = stats;
  Status st = PredictStandardised(x, n, out.data());
  t_observe = nullptr;
  return st;
}

Status Model::Predict(const float* input, int64_t n, float* out) const {
  if (n != input_size()) return PredictStandardised(input, n, out);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(input[i])) {
      return InvalidArgument("input value " + std::to_string(i) + " (step " +
                             std::to_string(i / features_) + ", feature " +
                             std::to_string(i % features_) + ") is not a finite number");
    }
  }
  const float* x = input;
  if (!in_mean_.empty()) {
    float* z = Grow(t_scratch.b, static_cast<size_t>(n));
    if (kind_ == "mlp") z = Grow(t_scratch.gi, static_cast<size_t>(n));  // mlp uses a and b
    for (int64_t i = 0; i < n; ++i) {
      const int64_t f = i % features_;
      z[i] = (input[i] - in_mean_[f]) * in_inv_std_[f];
    }
    x = z;
  }
  Run(x, out);
  if (denormalise_)
    for (int64_t o = 0; o < outputs_; ++o) out[o] = out[o] * out_std_ + out_mean_;
  return Status::OK();
}

}  // namespace ronghe::edge
