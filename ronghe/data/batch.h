// Building one batch's input tensor from a TensorData, for data whose examples differ in size:
// images of mixed resolutions (TensorData::sides), stored once at their native size and rendered
// at batch time (bilinear), and series windows of mixed history lengths (TensorData::lengths),
// stored left-aligned in a tensor of the longest.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/data/source.h"

namespace ronghe::data {

// Whether examples of `d` differ in size.
inline bool MixedSizes(const TensorData& d) { return !d.sides.empty() || !d.lengths.empty(); }
// The size example i is presented at: its side (images) or its length (series); 0 when `d` has
// one size throughout. This is the bucket key.
inline int64_t SizeOf(const TensorData& d, int64_t i) {
  return !d.sides.empty() ? d.sides[i] : !d.lengths.empty() ? d.lengths[i] : 0;
}
// Elements of one example presented at `size` (pixels x channels; time steps x features); with
// size 0, the stored example's flattened size.
int64_t ElementsAt(const TensorData& d, int64_t size);
inline int64_t ElementsOf(const TensorData& d, int64_t i) { return ElementsAt(d, SizeOf(d, i)); }
// The largest size in `d` (0 when it has one size throughout).
int64_t MaxSize(const TensorData& d);

struct Batch {
  at::Tensor x;        // [n, ...]
  at::Tensor lengths;  // padded sequences only: int64 [n] for the LSTM's packed forward
};

// Inputs of examples `idx`, in order.
// canvas == 0: every example of the batch must share one size (what the bucketing sampler
//   guarantees), so nothing is padded; InvalidArgument naming the first that does not.
// canvas > 0: pad-to-max. Images: each is rendered at its side and centred on a canvas x canvas
//   image filled with `fill` (the normalised value of a blank pixel). Series: the windows at the
//   stored length with their lengths, for a packed forward.
Result<Batch> GatherBatch(const TensorData& d, const std::vector<int64_t>& idx, int64_t canvas = 0,
                          float fill = 0);

// The value a blank (0) pixel takes after the preprocessing's normalisation; 0 for other data.
float BlankValue(const nlohmann::json& preprocessing);

}  // namespace ronghe::data
