// Building one batch's input tensor from a TensorData, for data whose examples differ in size.
// Images of mixed resolutions are stored once at their native size and rendered at batch time
// (bilinear), so memory does not grow with the largest resolution.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "ronghe/base/status.h"
#include "ronghe/data/source.h"

namespace ronghe::data {

// The side example i is presented at (its rendered size), or 0 when `d` has one size throughout.
inline int64_t SideOf(const TensorData& d, int64_t i) { return d.sides.empty() ? 0 : d.sides[i]; }
// Elements of example i as presented (pixels x channels for images; the flattened size otherwise).
int64_t ElementsOf(const TensorData& d, int64_t i);
// The largest side in `d` (0 when it has one size throughout).
int64_t MaxSide(const TensorData& d);

// Inputs of examples `idx`, in order.
// canvas == 0: every example of the batch must share one side (what the bucketing sampler
//   guarantees); InvalidArgument naming the first that does not.
// canvas > 0: pad-to-max; each example is rendered at its side and centred on a canvas x canvas
//   image filled with `fill` (the normalised value of a blank pixel).
Result<at::Tensor> GatherInputs(const TensorData& d, const std::vector<int64_t>& idx, int64_t canvas = 0,
                                float fill = 0);

// The value a blank (0) pixel takes after the preprocessing's normalisation; 0 for other data.
float BlankValue(const nlohmann::json& preprocessing);

}  // namespace ronghe::data
