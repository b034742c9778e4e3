// IDX files (the MNIST family's format), optionally gzipped: big-endian magic 0x0000 TTDD with
// type TT (0x08 = uint8) and DD dimensions, then DD big-endian uint32 sizes, then the data.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "ronghe/base/status.h"

namespace ronghe::data {

// Reads a uint8 IDX file (gzipped or not) into a uint8 tensor of its declared shape. A bad magic,
// an unsupported type, a size that disagrees with the data, or a truncated file is DataLoss
// naming the file.
Result<at::Tensor> ReadIdx(const std::string& path);

}  // namespace ronghe::data
