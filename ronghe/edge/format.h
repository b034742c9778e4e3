// The edge artifact (.rhe): a compact, self-checking model file that ronghe-edge runs without
// LibTorch. Layout (little-endian):
//   "RHEDGE01" | u32 header length | header JSON | zero padding to 64 | tensor blobs (each at a
//   64-byte-aligned offset from the blob start) | SHA-256 of everything before it (32 bytes)
// The header names the model (kind mlp | lstm | gru, input and output specs, precision fp32 |
// int8) and every tensor (name, dtype f32 | i8, shape, offset, bytes). A truncated or altered
// file fails the trailing digest before anything is parsed; the hub's signed metadata then says
// whether it is the file that was published.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::edge {

inline constexpr char kMagic[8] = {'R', 'H', 'E', 'D', 'G', 'E', '0', '1'};

struct Tensor {
  std::string dtype;  // "f32" | "i8"
  std::vector<int64_t> shape;
  std::string data;  // raw little-endian bytes
  int64_t numel() const;
};

struct Artifact {
  nlohmann::json header;  // everything but the tensors' placement (written by Serialize)
  std::map<std::string, Tensor> tensors;
};

// Encodes `a` (header + tensors + digest).
Result<std::string> Serialize(const Artifact& a);
// Decodes and checks: magic, digest, header JSON, every tensor inside the blob area with the
// bytes its dtype and shape need. `source` names the file in messages.
Result<Artifact> Parse(const std::string& bytes, const std::string& source);

Tensor F32Tensor(std::vector<int64_t> shape, const float* data);

}  // namespace ronghe::edge
