#include "ronghe/edge/export.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "ronghe/edge/format.h"

namespace ronghe::edge {
namespace {

Tensor FromTorch(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kFloat32).contiguous();
  return F32Tensor(std::vector<int64_t>(c.sizes().begin(), c.sizes().end()), c.data_ptr<float>());
}

// Symmetric per-row int8: scale_r = max|w_r| / 127, q = round(w / scale_r).
void QuantizeRows(const Tensor& w, Tensor* q, Tensor* scale) {
  const int64_t rows = w.shape[0], cols = w.shape[1];
  const auto* f = reinterpret_cast<const float*>(w.data.data());
  q->dtype = "i8";
  q->shape = w.shape;
  q->data.assign(static_cast<size_t>(rows * cols), '\0');
  std::vector<float> s(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(f[r * cols + c]));
    s[r] = m > 0 ? m / 127.0f : 1.0f;
    for (int64_t c = 0; c < cols; ++c) {
      float v = std::nearbyint(f[r * cols + c] / s[r]);
      q->data[r * cols + c] =
          static_cast<char>(static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f)));
    }
  }
  *scale = F32Tensor({rows}, s.data());
}

// "layers.3.weight" -> 3: the Sequential index of an MLP's layer.
int64_t LayerIndex(const std::string& name) {
  auto a = name.find('.'), b = name.find('.', a + 1);
  return std::stoll(name.substr(a + 1, b - a - 1));
}

}  // namespace

Result<std::string> ExportEdge(nn::Model& model, const nlohmann::json& manifest,
                               const ExportOptions& o, const at::Tensor* calibration) {
  if (o.precision != "fp32" && o.precision != "int8")
    return InvalidArgument("precision must be fp32 or int8, not '" + o.precision + "'");
  if (o.calibration != "mse" && o.calibration != "max")
    return InvalidArgument("calibration must be mse or max, not '" + o.calibration + "'");
  const nn::ModelConfig& c = model.config();
  if (c.kind != "mlp" && c.kind != "lstm" && c.kind != "gru") {
    return InvalidArgument("the edge runtime runs mlp, lstm and gru models, not a " + c.kind);
  }
  const std::string task = manifest.value("task", "");
  Artifact a;
  nlohmann::json& h = a.header;
  h["name"] = manifest.value("name", "model");
  h["model_version"] = o.model_version;
  h["kind"] = c.kind;
  h["precision"] = "fp32";
  h["task"] = task;
  h["outputs"] = c.outputs;
  h["classes"] = manifest.value("classes", nlohmann::json::array());
  if (manifest.contains("metrics")) h["metrics"] = manifest["metrics"];
  if (manifest.contains("distilled_from")) h["distilled_from"] = manifest["distilled_from"];
  if (manifest.contains("run_id")) h["run_id"] = manifest["run_id"];

  // The inputs: series windows [T, F] or table features [F], with the training statistics.
  const nlohmann::json prep = manifest.value("preprocessing", nlohmann::json::object());
  const std::string pkind = prep.value("kind", prep.contains("numeric") ? "table" : "");
  nlohmann::json names = nlohmann::json::array(), mean = nlohmann::json::array(),
                 sd = nlohmann::json::array();
  if (pkind == "series") {
    if (c.input_shape.size() != 2) return InvalidArgument("a series model takes [steps, features]");
    h["steps"] = c.input_shape[0];
    h["features"] = c.input_shape[1];
    names.push_back(prep.value("column", "value"));
    mean.push_back(prep.value("mean", 0.0));
    sd.push_back(prep.value("std", 1.0));
    for (const auto& cv : prep.value("covariates", nlohmann::json::array())) {
      names.push_back(cv.value("column", ""));
      mean.push_back(cv.value("mean", 0.0));
      sd.push_back(cv.value("std", 1.0));
    }
    if (static_cast<int64_t>(names.size()) != c.input_shape[1])
      return InvalidArgument("the series statistics do not match the model's features");
    if (task == "regression")
      h["output"] = {{"mean", prep.value("mean", 0.0)}, {"std", prep.value("std", 1.0)}};
  } else if (prep.contains("numeric")) {
    if (!prep.value("categorical", nlohmann::json::array()).empty()) {
      return InvalidArgument(
          "the edge runtime takes numeric table features only; this model has categorical "
          "columns");
    }
    if (c.kind != "mlp") return InvalidArgument("a table model must be an mlp");
    int64_t features = 1;
    for (int64_t d : c.input_shape) features *= d;
    h["steps"] = 1;
    h["features"] = features;
    for (const auto& n : prep["numeric"]) {
      names.push_back(n.value("name", ""));
      mean.push_back(n.value("mean", 0.0));
      sd.push_back(n.value("std", 1.0));
    }
    if (static_cast<int64_t>(names.size()) != features)
      return InvalidArgument("the table statistics do not match the model's features");
  } else {
    return InvalidArgument("the edge runtime needs series or table preprocessing, not '" + pkind +
                           "'");
  }
  h["input"] = {{"names", names}, {"mean", mean}, {"std", sd}};

  // The weights under the runtime's names.
  std::map<std::string, torch::Tensor> state;
  for (auto& [name, t] : model.NamedState()) state[name] = t;
  if (c.kind == "mlp") {
    std::vector<std::pair<int64_t, std::string>> layers;
    for (const auto& [name, t] : state)
      if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0)
        layers.emplace_back(LayerIndex(name), name.substr(0, name.size() - 7));
    std::sort(layers.begin(), layers.end());
    std::vector<int64_t> hidden;
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string p = "dense." + std::to_string(i);
      a.tensors[p + ".weight"] = FromTorch(state.at(layers[i].second + ".weight"));
      a.tensors[p + ".bias"] = FromTorch(state.at(layers[i].second + ".bias"));
      if (i + 1 < layers.size()) hidden.push_back(state.at(layers[i].second + ".weight").size(0));
    }
    h["hidden"] = hidden;
  } else {
    h["hidden"] = c.lstm_hidden;
    h["layers"] = c.lstm_layers;
    for (int64_t l = 0; l < c.lstm_layers; ++l) {
      const std::string src = c.kind + ".", n = std::to_string(l), p = "rnn." + n;
      a.tensors[p + ".w_ih"] = FromTorch(state.at(src + "weight_ih_l" + n));
      a.tensors[p + ".w_hh"] = FromTorch(state.at(src + "weight_hh_l" + n));
      a.tensors[p + ".b_ih"] = FromTorch(state.at(src + "bias_ih_l" + n));
      a.tensors[p + ".b_hh"] = FromTorch(state.at(src + "bias_hh_l" + n));
    }
    a.tensors["proj.weight"] = FromTorch(state.at("proj.weight"));
    a.tensors["proj.bias"] = FromTorch(state.at("proj.bias"));
  }
  ASSIGN_OR_RETURN(std::string fp32, Serialize(a));
  if (o.precision == "fp32") return fp32;

  // int8: calibrate the activation scales with the fp32 edge model on training inputs.
  if (calibration == nullptr || !calibration->defined() || calibration->size(0) == 0)
    return InvalidArgument("int8 needs calibration inputs (the training split)");
  ASSIGN_OR_RETURN(auto ref, Model::FromBytes(fp32, "(fp32 export)"));
  torch::Tensor cal = calibration->to(torch::kFloat32).contiguous();
  const int64_t n = std::min(o.calibration_examples, cal.size(0));
  const int64_t per = ref->input_size();
  if (cal.numel() / cal.size(0) != per)
    return InvalidArgument("calibration inputs have the wrong shape");
  ActivationStats stats;
  for (int pass = 0; pass < (o.calibration == "mse" ? 2 : 1); ++pass) {
    stats.histogram = pass == 1;
    for (int64_t i = 0; i < n; ++i)
      RETURN_IF_ERROR(ref->Observe(cal.data_ptr<float>() + i * per, per, &stats));
  }
  nlohmann::json scales = nlohmann::json::object();
  // The output layer stays fp32: it is the smallest matrix (hidden x outputs) and the one whose
  // input rounding reaches the forecast undamped (measured on gretl_load: an int8 head alone
  // doubled the MLP's worst error).
  const size_t head = ref->linear_names().size() - 1;
  h["fp32_layers"] = {ref->linear_names()[head]};
  for (size_t i = 0; i < head; ++i) {
    const std::string& w = ref->linear_names()[i];
    scales[w] = o.calibration == "mse" ? stats.Scale(i) : stats.MaxScale(i);
    Tensor q, s;
    QuantizeRows(a.tensors.at(w), &q, &s);
    a.tensors[w] = std::move(q);
    a.tensors[w + ".scale"] = std::move(s);
  }
  h["precision"] = "int8";
  h["act_scales"] = scales;
  h["calibration"] = {{"examples", n}, {"rule", o.calibration}};
  return Serialize(a);
}

Result<train::MetricMap> EvaluateEdge(const Model& m, const data::TensorData& d, data::Task task,
                                      const nlohmann::json& preprocessing) {
  if (!d.lengths.empty())
    return InvalidArgument("windows of mixed lengths are not supported at the edge");
  torch::Tensor x = d.x.to(torch::kFloat32).contiguous();
  const int64_t n = d.size(), per = m.input_size(), k = m.outputs();
  if (n > 0 && x.numel() / n != per)
    return InvalidArgument("the data does not fit the model's input");
  std::vector<float> out(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n; ++i)
    RETURN_IF_ERROR(m.PredictStandardised(x.data_ptr<float>() + i * per, per, out.data() + i * k));
  if (task == data::Task::kRegression) {
    const double mean = preprocessing.value("mean", 0.0), sd = preprocessing.value("std", 1.0);
    torch::Tensor y = d.y.to(torch::kFloat64).contiguous();
    std::vector<double> p(out.size()), a(out.size());
    for (size_t i = 0; i < out.size(); ++i) {
      p[i] = out[i] * sd + mean;
      a[i] = y.data_ptr<double>()[i] * sd + mean;
    }
    return train::RegressionMetrics(p, a);
  }
  std::vector<int64_t> labels(d.y.data_ptr<int64_t>(), d.y.data_ptr<int64_t>() + n);
  if (task == data::Task::kBinary) {
    std::vector<float> s(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) s[i] = 1.0f / (1.0f + std::exp(-out[i]));
    return train::BinaryMetrics(s, labels);
  }
  std::vector<int64_t> pred(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    pred[i] =
        std::max_element(out.begin() + i * k, out.begin() + (i + 1) * k) - (out.begin() + i * k);
  return train::MulticlassMetrics(pred, labels);
}

Result<double> MaxDifference(const Model& edge, nn::Model& model, const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  model.SetTraining(false);
  torch::Tensor ref = model.Forward(x).to(torch::kFloat32).contiguous();
  torch::Tensor xs = x.to(torch::kFloat32).contiguous();
  const int64_t n = xs.size(0), per = edge.input_size(), k = edge.outputs();
  std::vector<float> out(static_cast<size_t>(k));
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(edge.PredictStandardised(xs.data_ptr<float>() + i * per, per, out.data()));
    for (int64_t j = 0; j < k; ++j)
      worst = std::max(worst, static_cast<double>(std::fabs(out[j] - ref[i][j].item<float>())));
  }
  return worst;
}

}  // namespace ronghe::edge
