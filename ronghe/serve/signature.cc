#include "ronghe/serve/signature.h"

#include <ATen/ATen.h>

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

Result<at::Tensor> Signature::ToBatch(const InferRequestMsg& request) const {
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
  if (in.name == "input") {
    if (in.datatype != DataType::kFp32) {
      return InvalidArgument(std::string("input 'input': datatype ") + DataTypeName(in.datatype) +
                             ", the model takes FP32");
    }
    RETURN_IF_ERROR(want_shape("FP32"));
    return in.tensor;
  }
  if (in.name == "pixels" && kind_ == "image") {
    if (in.datatype != DataType::kUint8) {
      return InvalidArgument(std::string("input 'pixels': datatype ") + DataTypeName(in.datatype) +
                             ", raw pixels are UINT8");
    }
    RETURN_IF_ERROR(want_shape("UINT8"));
    double scale = JsonNumber(preprocessing_, "scale", 1.0 / 255),
           mean = JsonNumber(preprocessing_, "mean", 0.0),
           sd = JsonNumber(preprocessing_, "std", 1.0);
    return ((in.tensor.to(at::kFloat) * scale - mean) / sd).contiguous();
  }
  if (in.name == "record" && kind_ == "table") {
    if (in.datatype != DataType::kBytes || in.shape.size() != 1 || in.shape[0] < 1) {
      return InvalidArgument(
          "input 'record': BYTES of shape [N], each a JSON object of column values");
    }
    data::CsvTable table;
    table.source = "input 'record'";
    for (const auto& n : table_.numeric) table.columns.push_back(n.name);
    for (const auto& c : table_.categorical) table.columns.push_back(c.name);
    std::vector<int64_t> rows;
    for (size_t r = 0; r < in.bytes.size(); ++r) {
      std::string where = "input 'record'[" + std::to_string(r) + "]";
      json rec = json::parse(in.bytes[r], nullptr, false);
      if (rec.is_discarded() || !rec.is_object())
        return InvalidArgument(where + ": not a JSON object");
      std::vector<std::string> row(table.columns.size());
      for (auto it = rec.begin(); it != rec.end(); ++it) {
        size_t c = 0;
        while (c < table.columns.size() && table.columns[c] != it.key()) ++c;
        if (c == table.columns.size()) {
          if (it.key() == table_.label) continue;  // a labelled record may be sent as it is
          return InvalidArgument(where + ": unknown column '" + it.key() + "'");
        }
        const json& v = it.value();
        if (v.is_string())
          row[c] = v.get<std::string>();
        else if (v.is_number())
          row[c] = v.dump();
        else if (!v.is_null())
          return InvalidArgument(where + ": column '" + it.key() +
                                 "' must be a string, number or null");
      }
      table.rows.push_back(std::move(row));
      table.line_of_row.push_back(static_cast<int64_t>(r));
      rows.push_back(static_cast<int64_t>(r));
    }
    auto x = data::TransformTable(table, table_, rows);
    if (!x.ok()) return InvalidArgument(x.status().message());
    return std::move(x).value();
  }
  std::string accepted = "'input' (FP32)";
  if (kind_ == "image") accepted += " or 'pixels' (UINT8)";
  if (kind_ == "table") accepted += " or 'record' (BYTES)";
  return InvalidArgument("unknown input '" + in.name + "': this model takes " + accepted);
}

Result<std::vector<InferTensor>> Signature::FromOutput(
    const at::Tensor& logits, const std::vector<std::string>& names) const {
  std::vector<std::string> all = classification()
                                     ? std::vector<std::string>{"probabilities", "class", "logits"}
                                     : std::vector<std::string>{"prediction"};
  const std::vector<std::string>& want = names.empty() ? all : names;
  for (const auto& n : want) {
    if (std::find(all.begin(), all.end(), n) == all.end()) {
      std::string list;
      for (const auto& a : all) list += (list.empty() ? "'" : ", '") + a + "'";
      return InvalidArgument("unknown output '" + n + "': this model gives " + list);
    }
  }
  at::Tensor out = logits.to(at::kFloat);
  std::vector<InferTensor> result;
  at::Tensor probs;
  if (classification()) {
    probs = task_ == "binary" ? at::cat({1 - at::sigmoid(out), at::sigmoid(out)}, 1)
                              : at::softmax(out, 1);
  }
  for (const auto& n : want) {
    if (n == "probabilities") result.push_back(MakeTensor(n, probs));
    if (n == "class") result.push_back(MakeTensor(n, probs.argmax(1)));
    if (n == "logits") result.push_back(MakeTensor(n, out));
    if (n == "prediction") {
      at::Tensor p = out;
      if (kind_ == "series")
        p = out * JsonNumber(preprocessing_, "std", 1.0) + JsonNumber(preprocessing_, "mean", 0.0);
      result.push_back(MakeTensor(n, p));
    }
  }
  return result;
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
