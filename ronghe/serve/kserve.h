// The KServe v2 / Triton inference protocol over HTTP: request bodies decoded into tensors and
// responses encoded from them, in the JSON form and in the binary tensor data extension (a JSON
// header of `Inference-Header-Content-Length` bytes, then each binary tensor's raw little-endian
// bytes in order). Pure functions over bytes, shared by the HTTP front end, the gRPC front end
// (which fills the same structs from protobuf) and the fuzz target. Tensors hold their elements
// as raw bytes, not LibTorch tensors: a request's path from the wire to the model's batch and
// back is plain copies and loops.
// Protocol: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
// Binary extension: Triton's docs/protocol/extension_binary_data.md
#pragma once

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
// Bytes per element in the binary form: BOOL and UINT8 1, INT32 and FP32 4, INT64 and FP64 8;
// BYTES 0 (its elements are length-prefixed).
size_t ElementSize(DataType type);

struct InferTensor {
  std::string name;
  DataType datatype = DataType::kFp32;
  std::vector<int64_t> shape;
  std::string data;  // numeric types: Elements() * ElementSize() bytes, little-endian, row-major
                     // (BOOL: one byte 0 or 1)
  std::vector<std::string> bytes;  // BYTES: one string per element, row-major

  int64_t Elements() const;
  template <typename T>
  const T* As() const {
    return reinterpret_cast<const T*>(data.data());
  }
  template <typename T>
  T* Mutable() {
    return reinterpret_cast<T*>(data.data());
  }
};

// A numeric tensor of `shape` with room for its elements (zeroed).
InferTensor NumericTensor(std::string name, DataType type, std::vector<int64_t> shape);

struct InferRequestMsg {
  std::string id;
  std::vector<InferTensor> inputs;
  std::vector<std::string> outputs;  // names asked for; empty = every output
  // Outputs to send in binary form: those of `outputs` whose parameters say "binary_data": true,
  // or every output when the request's parameters say "binary_data_output": true.
  std::vector<std::string> binary_outputs;
  bool binary_output_all = false;
  nlohmann::json parameters = nlohmann::json::object();  // priority, timeout, key, ...

  bool BinaryOutput(const std::string& name) const;
};

struct DecodeLimits {
  int64_t max_elements = 1 << 24;  // Default: 16 Mi elements over all inputs.
  int max_depth = 32;              // Default: 32 levels of JSON nesting (nested "data" arrays).
};

// A malformed body, a missing field, a wrong type, a shape that disagrees with its data, or
// anything over the limits is InvalidArgument naming the field (e.g. "inputs[0].data[17]").
// Never throws, never crashes; safe on arbitrary bytes.
//
// `header_length` > 0 is the request's Inference-Header-Content-Length: the body's first that
// many bytes are the JSON, the rest the binary data of the inputs whose parameters carry
// "binary_data_size" (in input order). Sizes that disagree with a tensor's shape and datatype,
// that run past the body, or that leave bytes over are InvalidArgument naming the input.
Result<InferRequestMsg> DecodeInferRequest(std::string_view body, const DecodeLimits& limits = {},
                                           size_t header_length = 0);

// The response body {"model_name", "model_version", "id", "parameters", "outputs": [{name,
// datatype, shape, data}]}. Outputs `request` wants in binary form carry
// "parameters": {"binary_data_size": N} instead of "data", and their bytes follow the JSON;
// `*header_length` is then the JSON's length (the Inference-Header-Content-Length to send), else
// 0. Numbers are written directly from the tensors' bytes (floats in their shortest exact form).
std::string EncodeInferResponse(const std::string& model, const std::string& version,
                                const InferRequestMsg& request,
                                const std::vector<InferTensor>& outputs,
                                const nlohmann::json& parameters, size_t* header_length);

// {"error": message}: the v2 protocol's error body.
std::string ErrorBody(const std::string& message);

// A request in the binary form from one in the JSON form (every numeric or BYTES input's "data"
// replaced by its bytes; `binary_outputs` asks for every output in binary): what clients and
// `ronghe perf --binary` send. `*header_length` is the JSON header's length.
Result<std::string> ToBinaryRequest(std::string_view json_body, bool binary_outputs,
                                    size_t* header_length);

// The outputs of a response body (JSON or binary form), decoded: for clients and tests.
Result<std::vector<InferTensor>> DecodeInferResponse(std::string_view body, size_t header_length);

}  // namespace ronghe::serve
