#include "ronghe/serve/signature.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ronghe/base/json.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

Result<Signature> Signature::FromManifest(const json& manifest) {
  Signature s;
  if (!manifest.is_object() || !manifest.contains("model") || !manifest["model"].is_object()) {
    return InvalidArgument("manifest has no model section");
  }
  const json& m = manifest["model"];
  if (!m.contains("input_shape") || !m["input_shape"].is_array() || m["input_shape"].empty()) {
    return InvalidArgument("manifest: model.input_shape missing");
  }
  for (const json& d : m["input_shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0) {
      return InvalidArgument("manifest: model.input_shape holds a non-positive dimension");
    }
    s.input_shape_.push_back(d.get<int64_t>());
  }
  if (!m.contains("outputs") || !m["outputs"].is_number_integer() ||
      m["outputs"].get<int64_t>() <= 0) {
    return InvalidArgument("manifest: model.outputs missing");
  }
  s.outputs_ = m["outputs"].get<int64_t>();
  if (!manifest.contains("task") || !manifest["task"].is_string()) {
    return InvalidArgument("manifest: task missing");
  }
  s.task_ = manifest["task"].get<std::string>();
  if (s.task_ != "binary" && s.task_ != "multiclass" && s.task_ != "regression") {
    return InvalidArgument("manifest: unknown task '" + s.task_ + "'");
  }
  if (manifest.contains("classes") && manifest["classes"].is_array()) {
    for (const json& c : manifest["classes"]) {
      s.classes_.push_back(c.is_string() ? c.get<std::string>() : c.dump());
    }
  }
  if (s.task_ == "binary") {
    if (s.classes_.empty()) s.classes_ = {"0", "1"};
    if (s.outputs_ != 1 || s.classes_.size() != 2) {
      return InvalidArgument("manifest: a binary model has one output and two classes");
    }
  } else if (s.task_ == "multiclass") {
    if (s.classes_.empty()) {
      for (int64_t i = 0; i < s.outputs_; ++i) s.classes_.push_back(std::to_string(i));
    }
    if (static_cast<int64_t>(s.classes_.size()) != s.outputs_) {
      return InvalidArgument("manifest: " + std::to_string(s.classes_.size()) + " classes but " +
                             std::to_string(s.outputs_) + " outputs");
    }
  }
  if (manifest.contains("preprocessing") && manifest["preprocessing"].is_object()) {
    s.preprocessing_ = manifest["preprocessing"];
    s.kind_ = JsonString(s.preprocessing_, "kind");
  }
  s.row_elements_ = 1;
  for (int64_t d : s.input_shape_) s.row_elements_ *= d;
  if (s.kind_ == "image") {
    // The training normalisation, applied to every byte value once with the same tensor
    // expression (so served inputs are bitwise what the model was trained on).
    double scale = JsonNumber(s.preprocessing_, "scale", 1.0 / 255),
           mean = JsonNumber(s.preprocessing_, "mean", 0.0),
           sd = JsonNumber(s.preprocessing_, "std", 1.0);
    at::Tensor bytes = at::arange(256, at::kLong).to(at::kByte);
    at::Tensor lut = ((bytes.to(at::kFloat) * scale - mean) / sd).contiguous();
    s.pixel_lut_.assign(lut.data_ptr<float>(), lut.data_ptr<float>() + 256);
  }
  if (s.kind_ == "series") {
    s.series_std_ = static_cast<float>(JsonNumber(s.preprocessing_, "std", 1.0));
    s.series_mean_ = static_cast<float>(JsonNumber(s.preprocessing_, "mean", 0.0));
  }
  if (s.kind_ == "table") {
    auto prep = data::TablePreprocessing::FromJson(s.preprocessing_);
    if (!prep.ok()) return InvalidArgument("manifest: preprocessing: " + prep.status().message());
    s.table_ = std::move(prep).value();
    if (s.table_.num_features() != s.input_shape_[0]) {
      return InvalidArgument("manifest: preprocessing makes " +
                             std::to_string(s.table_.num_features()) +
                             " features but the model takes " + ShapeString(s.input_shape_));
    }
  }
  return s;
}

Result<InferRequest> Signature::Prepare(const InferRequestMsg& request,
                                        std::vector<float>* scratch) const {
  if (request.inputs.size() != 1) {
    return InvalidArgument("expected exactly one input, got " +
                           std::to_string(request.inputs.size()));
  }
  const InferTensor& in = request.inputs[0];
  auto want_shape = [&](const char* what) -> Status {
    bool ok = in.shape.size() == input_shape_.size() + 1 && in.shape[0] >= 1;
    for (size_t i = 0; ok && i < input_shape_.size(); ++i) ok = in.shape[i + 1] == input_shape_[i];
    if (ok) return Status::OK();
    std::vector<int64_t> want = {-1};
    want.insert(want.end(), input_shape_.begin(), input_shape_.end());
    return InvalidArgument("input '" + in.name + "': shape " + ShapeString(in.shape) +
                           ", the model takes " + what + " " + ShapeString(want));
  };
  InferRequest r;
  r.row_elements = row_elements_;
  if (in.name == "input") {
    if (in.datatype != DataType::kFp32) {
      return InvalidArgument(std::string("input 'input': datatype ") + DataTypeName(in.datatype) +
                             ", the model takes FP32");
    }
    RETURN_IF_ERROR(want_shape("FP32"));
    r.input = in.As<float>();
    r.rows = in.shape[0];
    return r;
  }
  if (in.name == "pixels" && kind_ == "image") {
    if (in.datatype != DataType::kUint8) {
      return InvalidArgument(std::string("input 'pixels': datatype ") + DataTypeName(in.datatype) +
                             ", raw pixels are UINT8");
    }
    RETURN_IF_ERROR(want_shape("UINT8"));
    r.pixels = in.As<uint8_t>();
    r.lut = pixel_lut_.data();
    r.rows = in.shape[0];
    return r;
  }
  if (in.name == "record" && kind_ == "table") {
    if (in.datatype != DataType::kBytes || in.shape.size() != 1 || in.shape[0] < 1) {
      return InvalidArgument(
          "input 'record': BYTES of shape [N], each a JSON object of column values");
    }
    // Each record straight into the scratch rows through the training transform (TransformRow):
    // no table, no tensor.
    const size_t ncols = table_.numeric.size() + table_.categorical.size();
    const int64_t width = table_.num_features();
    thread_local std::vector<std::string> cells;
    thread_local std::vector<const std::string*> cell_ptrs;
    cells.resize(ncols);
    cell_ptrs.resize(ncols);
    for (size_t c = 0; c < ncols; ++c) cell_ptrs[c] = &cells[c];
    auto column = [&](const std::string& key) -> size_t {
      for (size_t c = 0; c < table_.numeric.size(); ++c)
        if (table_.numeric[c].name == key) return c;
      for (size_t c = 0; c < table_.categorical.size(); ++c)
        if (table_.categorical[c].name == key) return table_.numeric.size() + c;
      return ncols;
    };
    scratch->resize(in.bytes.size() * static_cast<size_t>(width));
    for (size_t k = 0; k < in.bytes.size(); ++k) {
      const std::string where = "input 'record'[" + std::to_string(k) + "]";
      json rec = json::parse(in.bytes[k], nullptr, false);
      if (rec.is_discarded() || !rec.is_object())
        return InvalidArgument(where + ": not a JSON object");
      for (auto& cell : cells) cell.clear();  // absent = missing (empty), as in a CSV
      for (auto it = rec.begin(); it != rec.end(); ++it) {
        const size_t c = column(it.key());
        if (c == ncols) {
          if (it.key() == table_.label) continue;  // a labelled record may be sent as it is
          return InvalidArgument(where + ": unknown column '" + it.key() + "'");
        }
        const json& v = it.value();
        if (v.is_string())
          cells[c] = v.get<std::string>();
        else if (v.is_number())
          cells[c] = v.dump();
        else if (!v.is_null())
          return InvalidArgument(where + ": column '" + it.key() +
                                 "' must be a string, number or null");
      }
      Status st =
          data::TransformRow(table_, cell_ptrs.data(), scratch->data() + k * width, where, -1);
      if (!st.ok()) return InvalidArgument(st.message());
    }
    r.input = scratch->data();
    r.rows = static_cast<int64_t>(in.bytes.size());
    return r;
  }
  std::string accepted = "'input' (FP32)";
  if (kind_ == "image") accepted += " or 'pixels' (UINT8)";
  if (kind_ == "table") accepted += " or 'record' (BYTES)";
  return InvalidArgument("unknown input '" + in.name + "': this model takes " + accepted);
}

Result<at::Tensor> Signature::ToBatch(const InferRequestMsg& request) const {
  std::vector<float> scratch;
  ASSIGN_OR_RETURN(InferRequest r, Prepare(request, &scratch));
  std::vector<int64_t> shape = {r.rows};
  shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
  at::Tensor x = at::empty(shape, at::kFloat);
  float* dst = x.data_ptr<float>();
  const int64_t n = r.rows * r.row_elements;
  if (r.input) {
    std::copy(r.input, r.input + n, dst);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = r.lut[r.pixels[i]];
  }
  return x;
}

Result<std::vector<InferTensor>> Signature::FromOutput(
    const float* logits, int64_t rows, int64_t width, const std::vector<std::string>& names) const {
  static const std::vector<std::string> kClassification = {"probabilities", "class", "logits"};
  static const std::vector<std::string> kRegression = {"prediction"};
  const std::vector<std::string>& all = classification() ? kClassification : kRegression;
  const std::vector<std::string>& want = names.empty() ? all : names;
  for (const auto& n : want) {
    if (std::find(all.begin(), all.end(), n) == all.end()) {
      std::string list;
      for (const auto& a : all) list += (list.empty() ? "'" : ", '") + a + "'";
      return InvalidArgument("unknown output '" + n + "': this model gives " + list);
    }
  }
  if (width != outputs_) {
    return Internal("the model gave " + std::to_string(width) + " outputs per row, its manifest " +
                    std::to_string(outputs_));
  }
  std::vector<InferTensor> result;
  result.reserve(want.size());
  const int64_t classes = task_ == "binary" ? 2 : width;
  // Probabilities row by row: binary [1 - sigmoid(z), sigmoid(z)], multiclass softmax.
  auto probabilities = [&](float* p) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* z = logits + r * width;
      float* o = p + r * classes;
      if (task_ == "binary") {
        float s = 1.0f / (1.0f + std::exp(-z[0]));
        o[0] = 1.0f - s;
        o[1] = s;
        continue;
      }
      float m = z[0];
      for (int64_t c = 1; c < width; ++c) m = std::max(m, z[c]);
      float sum = 0;
      for (int64_t c = 0; c < width; ++c) sum += (o[c] = std::exp(z[c] - m));
      for (int64_t c = 0; c < width; ++c) o[c] /= sum;
    }
  };
  for (const auto& n : want) {
    if (n == "probabilities") {
      result.push_back(NumericTensor(n, DataType::kFp32, {rows, classes}));
      probabilities(result.back().Mutable<float>());
    } else if (n == "class") {
      result.push_back(NumericTensor(n, DataType::kInt64, {rows}));
      int64_t* c = result.back().Mutable<int64_t>();
      for (int64_t r = 0; r < rows; ++r) {
        const float* z = logits + r * width;
        if (task_ == "binary") {
          c[r] = z[0] > 0 ? 1 : 0;  // sigmoid(z) > 1/2
          continue;
        }
        int64_t best = 0;
        for (int64_t k = 1; k < width; ++k) best = z[k] > z[best] ? k : best;
        c[r] = best;  // the softmax is monotone: the top logit is the top probability
      }
    } else if (n == "logits") {
      result.push_back(NumericTensor(n, DataType::kFp32, {rows, width}));
      std::memcpy(result.back().Mutable<float>(), logits,
                  static_cast<size_t>(rows * width) * sizeof(float));
    } else if (n == "prediction") {
      result.push_back(NumericTensor(n, DataType::kFp32, {rows, width}));
      float* p = result.back().Mutable<float>();
      for (int64_t i = 0; i < rows * width; ++i) {
        p[i] = kind_ == "series" ? logits[i] * series_std_ + series_mean_ : logits[i];
      }
    }
  }
  return result;
}

Result<std::vector<InferTensor>> Signature::FromOutput(
    const at::Tensor& logits, const std::vector<std::string>& names) const {
  at::Tensor out = logits.to(at::kFloat).contiguous();
  if (out.dim() != 2) return Internal("the model's output is not [rows, outputs]");
  return FromOutput(out.data_ptr<float>(), out.size(0), out.size(1), names);
}

at::Tensor Signature::Confidence(const at::Tensor& logits) const {
  at::Tensor out = logits.to(at::kFloat);
  if (task_ == "binary") {
    at::Tensor p = at::sigmoid(out.select(1, 0));
    return at::max(p, 1 - p);
  }
  if (task_ == "multiclass") return std::get<0>(at::softmax(out, 1).max(1));
  return at::ones({out.size(0)});
}

json Signature::InputsJson() const {
  std::vector<int64_t> shape = {-1};
  shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
  json in = json::array({{{"name", "input"}, {"datatype", "FP32"}, {"shape", shape}}});
  if (kind_ == "image") in.push_back({{"name", "pixels"}, {"datatype", "UINT8"}, {"shape", shape}});
  if (kind_ == "table") {
    json cols = json::array();
    for (const auto& n : table_.numeric) cols.push_back(n.name);
    for (const auto& c : table_.categorical) cols.push_back(c.name);
    in.push_back({{"name", "record"},
                  {"datatype", "BYTES"},
                  {"shape", {-1}},
                  {"parameters", {{"columns", cols}}}});
  }
  return in;
}

json Signature::OutputsJson() const {
  if (!classification()) {
    return json::array({{{"name", "prediction"}, {"datatype", "FP32"}, {"shape", {-1, outputs_}}}});
  }
  int64_t c = static_cast<int64_t>(classes_.size());
  return json::array({{{"name", "probabilities"},
                       {"datatype", "FP32"},
                       {"shape", {-1, c}},
                       {"parameters", {{"classes", classes_}}}},
                      {{"name", "class"}, {"datatype", "INT64"}, {"shape", {-1}}},
                      {{"name", "logits"}, {"datatype", "FP32"}, {"shape", {-1, outputs_}}}});
}

}  // namespace ronghe::serve
