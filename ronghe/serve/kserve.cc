#include "ronghe/serve/kserve.h"

#include <algorithm>
#include <charconv>
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

size_t ElementSize(DataType t) {
  switch (t) {
    case DataType::kBool:
    case DataType::kUint8:
      return 1;
    case DataType::kInt32:
    case DataType::kFp32:
      return 4;
    case DataType::kInt64:
    case DataType::kFp64:
      return 8;
    case DataType::kBytes:
      return 0;
  }
  return 0;
}

InferTensor NumericTensor(std::string name, DataType type, std::vector<int64_t> shape) {
  InferTensor t;
  t.name = std::move(name);
  t.datatype = type;
  t.shape = std::move(shape);
  t.data.assign(static_cast<size_t>(t.Elements()) * ElementSize(type), '\0');
  return t;
}

bool InferRequestMsg::BinaryOutput(const std::string& name) const {
  if (binary_output_all) return true;
  return std::find(binary_outputs.begin(), binary_outputs.end(), name) != binary_outputs.end();
}

namespace {

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
        // For FP32, what does not round to a finite float (3.4028235e38, the shortest form of
        // the largest float, is above FLT_MAX as a double yet rounds to it).
        if (!std::isfinite(d) || (std::is_same_v<T, float> && std::isinf(static_cast<float>(d)))) {
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
  t->data.assign(static_cast<size_t>(expected) * sizeof(T), '\0');
  int64_t n = 0;
  RETURN_IF_ERROR(Flatten<T>(data, field, t->datatype, expected, t->Mutable<T>(), &n));
  if (n != expected) {
    return InvalidArgument(field + ": " + std::to_string(n) + " values, but the shape holds " +
                           std::to_string(expected));
  }
  return Status::OK();
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// An input's bytes from the binary part of the body, checked against its shape and datatype.
Status ReadBinary(std::string_view bin, size_t* offset, int64_t size, const std::string& where,
                  int64_t elements, InferTensor* t) {
  const size_t left = bin.size() - *offset;
  if (static_cast<uint64_t>(size) > left) {
    return InvalidArgument(where + ": binary_data_size " + std::to_string(size) +
                           " runs past the body (" + std::to_string(left) +
                           " bytes of binary data left)");
  }
  std::string_view b = bin.substr(*offset, static_cast<size_t>(size));
  *offset += static_cast<size_t>(size);
  if (t->datatype == DataType::kBytes) {
    size_t pos = 0;
    while (pos < b.size()) {
      if (static_cast<int64_t>(t->bytes.size()) >= elements) {
        return InvalidArgument(where + ": more BYTES elements than the shape holds (" +
                               std::to_string(elements) + ")");
      }
      if (b.size() - pos < 4) return InvalidArgument(where + ": truncated BYTES length prefix");
      uint32_t len;
      std::memcpy(&len, b.data() + pos, 4);
      pos += 4;
      if (b.size() - pos < len)
        return InvalidArgument(where + ": BYTES element " + std::to_string(t->bytes.size()) +
                               " of " + std::to_string(len) + " bytes overruns its binary data");
      t->bytes.emplace_back(b.data() + pos, len);
      pos += len;
    }
    if (static_cast<int64_t>(t->bytes.size()) != elements) {
      return InvalidArgument(where + ": " + std::to_string(t->bytes.size()) +
                             " BYTES elements, but the shape holds " + std::to_string(elements));
    }
    return Status::OK();
  }
  const int64_t want = elements * static_cast<int64_t>(ElementSize(t->datatype));
  if (size != want) {
    return InvalidArgument(where + ": binary_data_size " + std::to_string(size) + ", but shape " +
                           ShapeText(t->shape) + " of " + DataTypeName(t->datatype) + " needs " +
                           std::to_string(want) + " bytes");
  }
  t->data.assign(b.data(), b.size());
  if (t->datatype == DataType::kBool) {
    for (size_t i = 0; i < t->data.size(); ++i) {
      if (static_cast<unsigned char>(t->data[i]) > 1)
        return InvalidArgument(where + "[" + std::to_string(i) + "]: BOOL bytes are 0 or 1");
    }
  } else if (t->datatype == DataType::kFp32 || t->datatype == DataType::kFp64) {
    const bool fp32 = t->datatype == DataType::kFp32;
    for (int64_t i = 0; i < elements; ++i) {
      double v = fp32 ? t->As<float>()[i] : t->As<double>()[i];
      if (!std::isfinite(v))
        return InvalidArgument(where + "[" + std::to_string(i) + "]: not a finite " +
                               DataTypeName(t->datatype));
    }
  }
  return Status::OK();
}

Status DecodeTensor(const json& j, const std::string& field, const DecodeLimits& limits,
                    int64_t* budget, std::string_view bin, size_t* offset, bool has_binary,
                    InferTensor* t) {
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
  const json* params = nullptr;
  if (auto p = j.find("parameters"); p != j.end()) {
    if (!p->is_object()) return InvalidArgument(field + ".parameters: must be an object");
    params = &*p;
  }
  if (params && params->contains("binary_data_size")) {
    const std::string where = field + " ('" + t->name.substr(0, 64) + "')";
    const json& size = (*params)["binary_data_size"];
    if (!size.is_number_integer() || size.get<int64_t>() < 0)
      return InvalidArgument(where + ": binary_data_size must be a non-negative integer");
    if (data != j.end()) return InvalidArgument(where + ": has both data and binary_data_size");
    if (!has_binary) {
      return InvalidArgument(where +
                             ": binary_data_size, but the request has no "
                             "Inference-Header-Content-Length header");
    }
    return ReadBinary(bin, offset, size.get<int64_t>(), where, elements, t);
  }
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

// true/false parameter `name` of `params` (absent: false).
Result<bool> BoolParameter(const json& params, const char* name, const std::string& field) {
  auto it = params.find(name);
  if (it == params.end()) return false;
  if (!it->is_boolean()) return InvalidArgument(field + "." + name + ": must be true or false");
  return it->get<bool>();
}

}  // namespace

Result<InferRequestMsg> DecodeInferRequest(std::string_view body, const DecodeLimits& limits,
                                           size_t header_length) {
  const bool has_binary = header_length > 0;
  if (header_length > body.size()) {
    return InvalidArgument("Inference-Header-Content-Length " + std::to_string(header_length) +
                           " exceeds the body's " + std::to_string(body.size()) + " bytes");
  }
  std::string_view head = has_binary ? body.substr(0, header_length) : body;
  std::string_view bin = has_binary ? body.substr(header_length) : std::string_view();
  RETURN_IF_ERROR(CheckDepth(head, limits.max_depth));
  json j = json::parse(head.begin(), head.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return InvalidArgument(has_binary ? "the request's JSON header (its first "
                                        "Inference-Header-Content-Length bytes) is not valid JSON"
                                      : "request body is not valid JSON");
  }
  if (!j.is_object()) return InvalidArgument("request body must be a JSON object");
  InferRequestMsg msg;
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_string()) return InvalidArgument("id: must be a string");
    msg.id = id->get<std::string>();
  }
  if (auto p = j.find("parameters"); p != j.end()) {
    if (!p->is_object()) return InvalidArgument("parameters: must be an object");
    ASSIGN_OR_RETURN(msg.binary_output_all, BoolParameter(*p, "binary_data_output", "parameters"));
    msg.parameters = std::move(*p);
    msg.parameters.erase("binary_data_output");
  }
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array() || inputs->empty()) {
    return InvalidArgument("inputs: missing or not a non-empty array");
  }
  int64_t budget = limits.max_elements;
  size_t offset = 0;
  for (size_t i = 0; i < inputs->size(); ++i) {
    InferTensor t;
    RETURN_IF_ERROR(DecodeTensor((*inputs)[i], "inputs[" + std::to_string(i) + "]", limits, &budget,
                                 bin, &offset, has_binary, &t));
    for (const auto& prev : msg.inputs) {
      if (prev.name == t.name) return InvalidArgument("inputs: '" + t.name + "' given twice");
    }
    msg.inputs.push_back(std::move(t));
  }
  if (offset != bin.size()) {
    return InvalidArgument("binary data: " + std::to_string(bin.size()) +
                           " bytes follow the JSON header, but the inputs' binary_data_size add "
                           "up to " +
                           std::to_string(offset));
  }
  if (auto outs = j.find("outputs"); outs != j.end()) {
    if (!outs->is_array()) return InvalidArgument("outputs: must be an array");
    for (size_t i = 0; i < outs->size(); ++i) {
      const json& o = (*outs)[i];
      const std::string field = "outputs[" + std::to_string(i) + "]";
      auto n = o.is_object() ? o.find("name") : o.end();
      if (!o.is_object() || n == o.end() || !n->is_string()) {
        return InvalidArgument(field + ".name: missing or not a string");
      }
      msg.outputs.push_back(n->get<std::string>());
      if (auto p = o.find("parameters"); p != o.end()) {
        if (!p->is_object()) return InvalidArgument(field + ".parameters: must be an object");
        ASSIGN_OR_RETURN(bool binary, BoolParameter(*p, "binary_data", field + ".parameters"));
        if (binary) msg.binary_outputs.push_back(msg.outputs.back());
      }
    }
  }
  return msg;
}

namespace {

template <typename T>
void AppendNumber(std::string* o, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (v == 0 && std::signbit(v)) {  // "-0" would be read back as the integer 0
      o->append("-0.0");
      return;
    }
  }
  char buf[40];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // floats: the shortest exact form
  o->append(buf, r.ptr);
}

template <typename T>
void AppendData(std::string* o, const InferTensor& t) {
  const size_t n = t.data.size() / sizeof(T);
  const T* p = t.As<T>();
  o->push_back('[');
  for (size_t i = 0; i < n; ++i) {
    if (i) o->push_back(',');
    if constexpr (std::is_same_v<T, bool>) {
      o->append(reinterpret_cast<const uint8_t*>(p)[i] ? "true" : "false");
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      AppendNumber(o, static_cast<unsigned>(p[i]));
    } else {
      AppendNumber(o, p[i]);
    }
  }
  o->push_back(']');
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void AppendBytesElements(std::string* o, const std::vector<std::string>& elements) {
  for (const auto& b : elements) {
    uint32_t len = static_cast<uint32_t>(b.size());
    o->append(reinterpret_cast<const char*>(&len), 4);
    *o += b;
  }
}

}  // namespace

std::string EncodeInferResponse(const std::string& model, const std::string& version,
                                const InferRequestMsg& request,
                                const std::vector<InferTensor>& outputs, const json& parameters,
                                size_t* header_length) {
  std::string o;
  size_t reserve = 256;
  for (const InferTensor& t : outputs) reserve += t.data.size() * 3 + 96;
  o.reserve(reserve);
  o += "{\"model_name\":" + Dump(model) + ",\"model_version\":" + Dump(version);
  if (!request.id.empty()) o += ",\"id\":" + Dump(request.id);
  if (!parameters.empty()) o += ",\"parameters\":" + Dump(parameters);
  o += ",\"outputs\":[";
  std::vector<const InferTensor*> binary;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const InferTensor& t = outputs[k];
    if (k) o += ',';
    o += "{\"name\":" + Dump(t.name) + ",\"datatype\":\"" + DataTypeName(t.datatype) +
         "\",\"shape\":" + ShapeText(t.shape);
    if (request.BinaryOutput(t.name)) {
      size_t size = t.data.size();
      if (t.datatype == DataType::kBytes) {
        size = 0;
        for (const auto& b : t.bytes) size += 4 + b.size();
      }
      o += ",\"parameters\":{\"binary_data_size\":" + std::to_string(size) + "}}";
      binary.push_back(&t);
      continue;
    }
    o += ",\"data\":";
    switch (t.datatype) {
      case DataType::kBool:
        AppendData<bool>(&o, t);
        break;
      case DataType::kUint8:
        AppendData<uint8_t>(&o, t);
        break;
      case DataType::kInt32:
        AppendData<int32_t>(&o, t);
        break;
      case DataType::kInt64:
        AppendData<int64_t>(&o, t);
        break;
      case DataType::kFp32:
        AppendData<float>(&o, t);
        break;
      case DataType::kFp64:
        AppendData<double>(&o, t);
        break;
      case DataType::kBytes:
        o += Dump(t.bytes);
        break;
    }
    o += '}';
  }
  o += "]}";
  *header_length = binary.empty() ? 0 : o.size();
  for (const InferTensor* t : binary) {
    if (t->datatype == DataType::kBytes) {
      AppendBytesElements(&o, t->bytes);
    } else {
      o += t->data;
    }
  }
  return o;
}

std::string ErrorBody(const std::string& message) { return Dump(json{{"error", message}}); }

Result<std::string> ToBinaryRequest(std::string_view json_body, bool binary_outputs,
                                    size_t* header_length) {
  ASSIGN_OR_RETURN(InferRequestMsg msg, DecodeInferRequest(json_body));
  json head = json::object();
  if (!msg.id.empty()) head["id"] = msg.id;
  json params = msg.parameters;
  if (binary_outputs) params["binary_data_output"] = true;
  if (!params.empty()) head["parameters"] = params;
  json inputs = json::array();
  std::string bin;
  for (const InferTensor& t : msg.inputs) {
    size_t before = bin.size();
    if (t.datatype == DataType::kBytes) {
      AppendBytesElements(&bin, t.bytes);
    } else {
      bin += t.data;
    }
    inputs.push_back({{"name", t.name},
                      {"datatype", DataTypeName(t.datatype)},
                      {"shape", t.shape},
                      {"parameters", {{"binary_data_size", bin.size() - before}}}});
  }
  head["inputs"] = inputs;
  if (!msg.outputs.empty()) {
    json outs = json::array();
    for (const auto& n : msg.outputs) outs.push_back({{"name", n}});
    head["outputs"] = outs;
  }
  std::string out = Dump(head);
  *header_length = out.size();
  out += bin;
  return out;
}

Result<std::vector<InferTensor>> DecodeInferResponse(std::string_view body, size_t header_length) {
  if (header_length > body.size()) {
    return InvalidArgument("Inference-Header-Content-Length " + std::to_string(header_length) +
                           " exceeds the body's " + std::to_string(body.size()) + " bytes");
  }
  std::string_view head = header_length ? body.substr(0, header_length) : body;
  std::string_view bin = header_length ? body.substr(header_length) : std::string_view();
  json j = json::parse(head.begin(), head.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("outputs") || !j["outputs"].is_array())
    return InvalidArgument("the response is not a v2 inference response");
  std::vector<InferTensor> out;
  size_t offset = 0;
  DecodeLimits limits;
  int64_t budget = limits.max_elements;
  for (size_t i = 0; i < j["outputs"].size(); ++i) {
    InferTensor t;
    RETURN_IF_ERROR(DecodeTensor(j["outputs"][i], "outputs[" + std::to_string(i) + "]", limits,
                                 &budget, bin, &offset, header_length > 0, &t));
    out.push_back(std::move(t));
  }
  if (offset != bin.size()) return InvalidArgument("binary data left over after the outputs");
  return out;
}

}  // namespace ronghe::serve
