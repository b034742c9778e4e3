// The KServe v2 / Triton inference protocol in its JSON form: request bodies decoded into tensors
// and responses encoded from them. Pure functions over bytes, shared by the HTTP front end, the
// gRPC front end (which fills the same structs from protobuf) and the fuzz target.
// Protocol: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::serve {

// The v2 datatypes ronghe accepts. BYTES elements are strings (JSON form) or length-prefixed
// byte strings (gRPC form).
enum class DataType { kBool, kUint8, kInt32, kInt64, kFp32, kFp64, kBytes };

Result<DataType> ParseDataType(std::string_view name);  // "FP32", ...
const char* DataTypeName(DataType type);

struct InferTensor {
  std::string name;
  DataType datatype = DataType::kFp32;
  std::vector<int64_t> shape;
  at::Tensor tensor;               // numeric types: CPU, contiguous, of `shape`
  std::vector<std::string> bytes;  // BYTES: one string per element, row-major

  int64_t Elements() const;
};

struct InferRequestMsg {
  std::string id;
  std::vector<InferTensor> inputs;
  std::vector<std::string> outputs;                      // names asked for; empty = every output
  nlohmann::json parameters = nlohmann::json::object();  // priority, timeout, key, ...
};

struct DecodeLimits {
  int64_t max_elements = 1 << 24;  // Default: 16 Mi elements over all inputs.
  int max_depth = 32;              // Default: 32 levels of JSON nesting (nested "data" arrays).
};

// A malformed body, a missing field, a wrong type, a shape that disagrees with its data, or
// anything over the limits is InvalidArgument naming the field (e.g. "inputs[0].data[17]").
// Never throws, never crashes; safe on arbitrary bytes.
Result<InferRequestMsg> DecodeInferRequest(std::string_view body, const DecodeLimits& limits = {});

// {"model_name", "model_version", "id", "parameters", "outputs": [{name, datatype, shape, data}]}
std::string EncodeInferResponse(const std::string& model, const std::string& version,
                                const std::string& id, const std::vector<InferTensor>& outputs,
                                const nlohmann::json& parameters);

// {"error": message}: the v2 protocol's error body.
std::string ErrorBody(const std::string& message);

// Builds a numeric InferTensor from a tensor (its dtype picks the v2 datatype).
InferTensor MakeTensor(std::string name, const at::Tensor& t);

}  // namespace ronghe::serve
