// The tensor container behind model artifacts and checkpoints: named tensors plus a JSON header,
// no pickled code anywhere, so loading a file never executes anything it contains.
//
//   bytes 0..7    magic "RONGHE\0T"
//   bytes 8..11   format version (uint32 little-endian, currently 1)
//   bytes 12..15  reserved, 0
//   bytes 16..23  header length H (uint64 little-endian)
//   bytes 24..    header: JSON {"meta": {...}, "tensors": [{name, dtype, shape, offset, nbytes}]}
//   then          tensor data, each tensor 64-byte aligned, offsets relative to the data start
//   last 32 bytes SHA-256 of everything before them
//
// The trailing digest catches truncation, bit rot and casual tampering; it is not a signature
// (signed models come with the marketplace). See docs/formats/model.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::nn {

struct TensorFile {
  nlohmann::json meta;
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // CPU, contiguous on load

  // Tensor by name, or DataLoss naming it.
  Result<at::Tensor> Get(const std::string& name) const;
};

std::string EncodeTensorFile(const TensorFile& file);
// Any malformed input gives DataLoss naming `source`; never a crash.
Result<TensorFile> DecodeTensorFile(const std::string& bytes, const std::string& source);

// Atomic write (temporary file + rename): a crash mid-write leaves the previous file intact.
Status WriteTensorFile(const std::string& path, const TensorFile& file, mode_t mode = 0644);
Result<TensorFile> ReadTensorFile(const std::string& path);

}  // namespace ronghe::nn
