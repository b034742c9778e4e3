#include "ronghe/data/batch.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "ronghe/base/json.h"

namespace ronghe::data {

namespace {

// Bilinear rendering of native images [n, c, h, w] at side x side.
torch::Tensor Render(const torch::Tensor& x, int64_t side) {
  if (x.size(2) == side && x.size(3) == side) return x;
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{side, side})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

torch::Tensor IndexTensor(const std::vector<int64_t>& idx) {
  return torch::from_blob(const_cast<int64_t*>(idx.data()), {static_cast<int64_t>(idx.size())},
                          torch::kInt64);
}

}  // namespace

int64_t ElementsAt(const TensorData& d, int64_t size) {
  int64_t per = 1;
  for (int64_t k = 1; k < d.x.dim(); ++k) per *= d.x.size(k);
  if (size == 0) return per;
  if (!d.sides.empty()) return d.x.size(1) * size * size;
  return size * (per / d.x.size(1));  // time steps x features
}

int64_t MaxSize(const TensorData& d) {
  if (!d.sides.empty()) return *std::max_element(d.sides.begin(), d.sides.end());
  if (!d.lengths.empty()) return *std::max_element(d.lengths.begin(), d.lengths.end());
  return 0;
}

float BlankValue(const nlohmann::json& preprocessing) {
  if (!preprocessing.is_object() || JsonString(preprocessing, "kind") != "image") return 0;
  double mean = JsonNumber(preprocessing, "mean", 0.0), sd = JsonNumber(preprocessing, "std", 1.0);
  return static_cast<float>(sd > 0 ? -mean / sd : 0);
}

Result<Batch> GatherBatch(const TensorData& d, const std::vector<int64_t>& idx, int64_t canvas,
                          float fill) {
  for (int64_t i : idx) {
    if (i < 0 || i >= d.size())
      return InvalidArgument("batch: example " + std::to_string(i) + " is out of range");
  }
  Batch b;
  b.x = d.x.index_select(0, IndexTensor(idx));
  if (!MixedSizes(d) || idx.empty()) return b;
  const char* unit = d.sides.empty() ? " steps" : " px";
  if (canvas == 0) {
    int64_t size = SizeOf(d, idx[0]);
    for (int64_t i : idx) {
      if (SizeOf(d, i) != size) {
        return InvalidArgument("batch: example " + std::to_string(i) + " is " +
                               std::to_string(SizeOf(d, i)) + unit + ", the batch is " +
                               std::to_string(size) + unit + " (use bucketing or a canvas)");
      }
    }
    // Series are stored left-aligned: the first `size` steps are the whole window.
    b.x = d.sides.empty() ? b.x.narrow(1, 0, size) : Render(b.x, size);
    return b;
  }
  if (d.sides.empty()) {
    std::vector<int64_t> len;
    for (int64_t i : idx) len.push_back(d.lengths[i]);
    b.lengths = torch::tensor(len, torch::kInt64);
    if (canvas < b.x.size(1)) b.x = b.x.narrow(1, 0, canvas);
    for (int64_t l : len) {
      if (l > canvas)
        return InvalidArgument("batch: a " + std::to_string(l) +
                               "-step window exceeds the canvas of " + std::to_string(canvas));
    }
    return b;
  }
  // Pad-to-max images: one render per distinct side, pasted into the centre of the canvas.
  torch::Tensor x = b.x;
  torch::Tensor out = torch::full({x.size(0), x.size(1), canvas, canvas}, fill, x.options());
  std::map<int64_t, std::vector<int64_t>> rows_by_side;
  for (size_t r = 0; r < idx.size(); ++r)
    rows_by_side[d.sides[idx[r]]].push_back(static_cast<int64_t>(r));
  for (const auto& [side, rows] : rows_by_side) {
    if (side > canvas) {
      return InvalidArgument("batch: a " + std::to_string(side) + " px example does not fit a " +
                             std::to_string(canvas) + " px canvas");
    }
    torch::Tensor r = IndexTensor(rows);
    torch::Tensor img = Render(x.index_select(0, r), side);
    int64_t off = (canvas - side) / 2;
    torch::Tensor window = out.narrow(2, off, side).narrow(3, off, side);
    window.index_copy_(0, r, img);
  }
  b.x = out;
  return b;
}

}  // namespace ronghe::data
