#include "ronghe/data/batch.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>

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
  return torch::from_blob(const_cast<int64_t*>(idx.data()), {static_cast<int64_t>(idx.size())}, torch::kInt64);
}

}  // namespace

int64_t ElementsOf(const TensorData& d, int64_t i) {
  int64_t per = 1;
  for (int64_t k = 1; k < d.x.dim(); ++k) per *= d.x.size(k);
  if (d.sides.empty()) return per;
  return d.x.size(1) * d.sides[i] * d.sides[i];
}

int64_t MaxSide(const TensorData& d) {
  return d.sides.empty() ? 0 : *std::max_element(d.sides.begin(), d.sides.end());
}

float BlankValue(const nlohmann::json& preprocessing) {
  if (!preprocessing.is_object() || preprocessing.value("kind", "") != "image") return 0;
  double mean = preprocessing.value("mean", 0.0), sd = preprocessing.value("std", 1.0);
  return static_cast<float>(sd > 0 ? -mean / sd : 0);
}

Result<at::Tensor> GatherInputs(const TensorData& d, const std::vector<int64_t>& idx, int64_t canvas, float fill) {
  for (int64_t i : idx) {
    if (i < 0 || i >= d.size()) return InvalidArgument("batch: example " + std::to_string(i) + " is out of range");
  }
  torch::Tensor x = d.x.index_select(0, IndexTensor(idx));
  if (d.sides.empty()) return x;
  if (idx.empty()) return x;
  if (canvas == 0) {
    int64_t side = d.sides[idx[0]];
    for (int64_t i : idx) {
      if (d.sides[i] != side) {
        return InvalidArgument("batch: example " + std::to_string(i) + " is " + std::to_string(d.sides[i]) +
                               " px, the batch is " + std::to_string(side) + " px (use bucketing or a canvas)");
      }
    }
    return Render(x, side);
  }
  // Pad-to-max: one render per distinct side, pasted into the centre of the canvas.
  torch::Tensor out = torch::full({x.size(0), x.size(1), canvas, canvas}, fill, x.options());
  std::map<int64_t, std::vector<int64_t>> rows_by_side;
  for (size_t r = 0; r < idx.size(); ++r) rows_by_side[d.sides[idx[r]]].push_back(static_cast<int64_t>(r));
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
  return out;
}

}  // namespace ronghe::data
