#include "ronghe/serve/kserve.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace ronghe::serve {

using nlohmann::json;

Result<DataType> ParseDataType(std::string_view name) {
  if (name == "BOOL") return DataType::kBool;
  if (name == "UINT8") return DataType::kUint8;
  if (name == "INT32") return DataType::kInt32;
  if (name == "INT64") return DataType::kInt64;
  if (name == "FP32") return DataType::kFp32;
  if (name == "FP64") return DataType::kFp64;
  if (name == "BYTES") return DataType::kBytes;
  return InvalidArgument("unsupported datatype '" + std::string(name.substr(0, 32)) +
                         "' (BOOL, UINT8, INT32, INT64, FP32, FP64 or BYTES)");
}

const char* DataTypeName(DataType type) {
  switch (type) {
    case DataType::kBool:
      return "BOOL";
    case DataType::kUint8:
      return "UINT8";
    case DataType::kInt32:
      return "INT32";
    case DataType::kInt64:
      return "INT64";
    case DataType::kFp32:
      return "FP32";
    case DataType::kFp64:
      return "FP64";
    case DataType::kBytes:
      return "BYTES";
  }
  return "?";
}

int64_t InferTensor::Elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

at::ScalarType ScalarOf(DataType t) {
  switch (t) {
    case DataType::kBool:
      return at::kBool;
    case DataType::kUint8:
      return at::kByte;
    case DataType::kInt32:
      return at::kInt;
    case DataType::kInt64:
      return at::kLong;
    case DataType::kFp64:
      return at::kDouble;
    default:
      return at::kFloat;
  }
}

// nlohmann's parser recurses once per nesting level, so a body of a million '[' would exhaust
// the stack: measure the depth first, skipping strings, in one pass without allocating.
Status CheckDepth(std::string_view body, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return InvalidArgument("request body nests deeper than " + std::to_string(max_depth) +
                               " levels");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return Status::OK();
}

// Writes the leaves of `data` (nested arrays allowed, row-major) into `out` as T.
template <typename T>
Status Flatten(const json& data, const std::string& field, DataType type, int64_t expected, T* out,
               int64_t* n) {
  if (data.is_array()) {
    for (size_t i = 0; i < data.size(); ++i) {
      const json& v = data[i];
      if (v.is_array()) {
        RETURN_IF_ERROR(Flatten(v, field, type, expected, out, n));
        continue;
      }
      if (*n >= expected) {
        return InvalidArgument(field + ": more values than the shape holds (" +
                               std::to_string(expected) + ")");
      }
      // Built only on error: this loop runs once per element of every request.
      auto at = [&] { return field + "[" + std::to_string(*n) + "]"; };
      T value{};
      if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean()) return InvalidArgument(at() + ": BOOL wants true or false");
        value = v.get<bool>();
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!v.is_number())
          return InvalidArgument(at() + ": " + DataTypeName(type) + " wants a number");
        double d = v.get<double>();
        if (!std::isfinite(d) ||
            (std::is_same_v<T, float> && std::fabs(d) > std::numeric_limits<float>::max())) {
          return InvalidArgument(at() + ": not a finite " + DataTypeName(type));
        }
        value = static_cast<T>(d);
      } else {
        if (!v.is_number_integer()) {
          return InvalidArgument(at() + ": " + DataTypeName(type) + " wants an integer");
        }
        bool fits =
            v.is_number_unsigned()
                ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                : v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                      v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max());
        if (!fits) return InvalidArgument(at() + ": out of range for " + DataTypeName(type));
        value = v.is_number_unsigned() ? static_cast<T>(v.get<uint64_t>())
                                       : static_cast<T>(v.get<int64_t>());
      }
      out[(*n)++] = value;
    }
    return Status::OK();
  }
  return InvalidArgument(field + ": must be an array");
}

Status FlattenBytes(const json& data, const std::string& field, int64_t expected,
                    std::vector<std::string>* out) {
  if (!data.is_array()) return InvalidArgument(field + ": must be an array");
  for (const json& v : data) {
    if (v.is_array()) {
      RETURN_IF_ERROR(FlattenBytes(v, field, expected, out));
      continue;
    }
    if (static_cast<int64_t>(out->size()) >= expected) {
      return InvalidArgument(field + ": more values than the shape holds (" +
                             std::to_string(expected) + ")");
    }
    if (!v.is_string()) {
      return InvalidArgument(field + "[" + std::to_string(out->size()) + "]: BYTES wants a string");
    }
    out->push_back(v.get<std::string>());
  }
  return Status::OK();
}

template <typename T>
Status FillTensor(const json& data, const std::string& field, InferTensor* t, int64_t expected) {
  t->tensor = at::empty(t->shape, at::TensorOptions().dtype(ScalarOf(t->datatype)));
  int64_t n = 0;
  RETURN_IF_ERROR(Flatten<T>(data, field, t->datatype, expected, t->tensor.data_ptr<T>(), &n));
  if (n != expected) {
    return InvalidArgument(field + ": " + std::to_string(n) + " values, but the shape holds " +
                           std::to_string(expected));
  }
  return Status::OK();
}

Status DecodeTensor(const json& j, const std::string& field, const DecodeLimits& limits,
                    int64_t* budget, InferTensor* t) {
  if (!j.is_object()) return InvalidArgument(field + ": must be an object");
  auto name = j.find("name");
  if (name == j.end() || !name->is_string())
    return InvalidArgument(field + ".name: missing or not a string");
  t->name = name->get<std::string>();
  auto dt = j.find("datatype");
  if (dt == j.end() || !dt->is_string()) {
    return InvalidArgument(field + ".datatype: missing or not a string");
  }
  auto type = ParseDataType(dt->get<std::string>());
  if (!type.ok()) return InvalidArgument(field + ".datatype: " + type.status().message());
  t->datatype = *type;
  auto shape = j.find("shape");
  if (shape == j.end() || !shape->is_array())
    return InvalidArgument(field + ".shape: missing or not an array");
  if (shape->size() > 8) return InvalidArgument(field + ".shape: more than 8 dimensions");
  int64_t elements = 1;
  for (size_t i = 0; i < shape->size(); ++i) {
    const json& d = (*shape)[i];
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return InvalidArgument(field + ".shape[" + std::to_string(i) +
                             "]: not a non-negative integer");
    }
    int64_t v = d.get<int64_t>();
    if (v > limits.max_elements || (v > 0 && elements > limits.max_elements / v)) {
      return InvalidArgument(field + ".shape: more than " + std::to_string(limits.max_elements) +
                             " elements");
    }
    elements *= v;
    t->shape.push_back(v);
  }
  if (elements > *budget) {
    return InvalidArgument(field + ": the request holds more than " +
                           std::to_string(limits.max_elements) + " elements");
  }
  *budget -= elements;
  auto data = j.find("data");
  if (data == j.end()) return InvalidArgument(field + ".data: missing");
  std::string df = field + ".data";
  switch (t->datatype) {
    case DataType::kBool:
      return FillTensor<bool>(*data, df, t, elements);
    case DataType::kUint8:
      return FillTensor<uint8_t>(*data, df, t, elements);
    case DataType::kInt32:
      return FillTensor<int32_t>(*data, df, t, elements);
    case DataType::kInt64:
      return FillTensor<int64_t>(*data, df, t, elements);
    case DataType::kFp32:
      return FillTensor<float>(*data, df, t, elements);
    case DataType::kFp64:
      return FillTensor<double>(*data, df, t, elements);
    case DataType::kBytes: {
      RETURN_IF_ERROR(FlattenBytes(*data, df, elements, &t->bytes));
      if (static_cast<int64_t>(t->bytes.size()) != elements) {
        return InvalidArgument(df + ": " + std::to_string(t->bytes.size()) +
                               " values, but the shape holds " + std::to_string(elements));
      }
      return Status::OK();
    }
  }
  return Internal("unreachable datatype");
}

}  // namespace

Result<InferRequestMsg> DecodeInferRequest(std::string_view body, const DecodeLimits& limits) {
  RETURN_IF_ERROR(CheckDepth(body, limits.max_depth));
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("request body is not valid JSON");
  if (!j.is_object()) return InvalidArgument("request body must be a JSON object");
  InferRequestMsg msg;
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_string()) return InvalidArgument("id: must be a string");
    msg.id = id->get<std::string>();
  }
  if (auto p = j.find("parameters"); p != j.end()) {
    if (!p->is_object()) return InvalidArgument("parameters: must be an object");
    msg.parameters = *p;
  }
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array() || inputs->empty()) {
    return InvalidArgument("inputs: missing or not a non-empty array");
  }
  int64_t budget = limits.max_elements;
  for (size_t i = 0; i < inputs->size(); ++i) {
    InferTensor t;
    RETURN_IF_ERROR(
        DecodeTensor((*inputs)[i], "inputs[" + std::to_string(i) + "]", limits, &budget, &t));
    for (const auto& prev : msg.inputs) {
      if (prev.name == t.name) return InvalidArgument("inputs: '" + t.name + "' given twice");
    }
    msg.inputs.push_back(std::move(t));
  }
  if (auto outs = j.find("outputs"); outs != j.end()) {
    if (!outs->is_array()) return InvalidArgument("outputs: must be an array");
    for (size_t i = 0; i < outs->size(); ++i) {
      const json& o = (*outs)[i];
      auto n = o.is_object() ? o.find("name") : o.end();
      if (!o.is_object() || n == o.end() || !n->is_string()) {
        return InvalidArgument("outputs[" + std::to_string(i) + "].name: missing or not a string");
      }
      msg.outputs.push_back(n->get<std::string>());
    }
  }
  return msg;
}

namespace {

template <typename T>
json DataArray(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  const T* p = c.data_ptr<T>();
  json a = json::array();
  a.get_ref<json::array_t&>().reserve(static_cast<size_t>(c.numel()));
  for (int64_t i = 0; i < c.numel(); ++i) a.push_back(p[i]);
  return a;
}

}  // namespace

std::string EncodeInferResponse(const std::string& model, const std::string& version,
                                const std::string& id, const std::vector<InferTensor>& outputs,
                                const json& parameters) {
  json j = {{"model_name", model}, {"model_version", version}};
  if (!id.empty()) j["id"] = id;
  if (!parameters.empty()) j["parameters"] = parameters;
  json outs = json::array();
  for (const InferTensor& t : outputs) {
    json o = {{"name", t.name}, {"datatype", DataTypeName(t.datatype)}, {"shape", t.shape}};
    switch (t.datatype) {
      case DataType::kBool:
        o["data"] = DataArray<bool>(t.tensor);
        break;
      case DataType::kUint8:
        o["data"] = DataArray<uint8_t>(t.tensor);
        break;
      case DataType::kInt32:
        o["data"] = DataArray<int32_t>(t.tensor);
        break;
      case DataType::kInt64:
        o["data"] = DataArray<int64_t>(t.tensor);
        break;
      case DataType::kFp32:
        o["data"] = DataArray<float>(t.tensor);
        break;
      case DataType::kFp64:
        o["data"] = DataArray<double>(t.tensor);
        break;
      case DataType::kBytes:
        o["data"] = t.bytes;
        break;
    }
    outs.push_back(std::move(o));
  }
  j["outputs"] = std::move(outs);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorBody(const std::string& message) {
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

InferTensor MakeTensor(std::string name, const at::Tensor& t) {
  InferTensor out;
  out.name = std::move(name);
  switch (t.scalar_type()) {
    case at::kBool:
      out.datatype = DataType::kBool;
      break;
    case at::kByte:
      out.datatype = DataType::kUint8;
      break;
    case at::kInt:
      out.datatype = DataType::kInt32;
      break;
    case at::kLong:
      out.datatype = DataType::kInt64;
      break;
    case at::kDouble:
      out.datatype = DataType::kFp64;
      break;
    default:
      out.datatype = DataType::kFp32;
      break;
  }
  out.tensor = t.scalar_type() == at::kFloat || out.datatype != DataType::kFp32
                   ? t.contiguous()
                   : t.to(at::kFloat).contiguous();
  out.shape = t.sizes().vec();
  return out;
}

}  // namespace ronghe::serve
