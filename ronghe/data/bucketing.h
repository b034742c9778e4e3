// Dynamic batching of inputs of different sizes: examples are grouped by shape bucket and cut
// into batches under a budget of elements (pixels for images, time steps for series) instead of
// padding everything to the largest example. A batch's cost is its padded size, count x the
// largest example in it, so within a bucket of equal shapes it is exactly the data it holds.
//
// Pure index arithmetic (std::mt19937_64), like split.h: the same inputs, seed and epoch give the
// same batches on every machine.
#pragma once

#include <cstdint>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::data {

struct BucketingOptions {
  int64_t max_elements = 0;    // required: budget per batch, in padded elements
  int64_t max_batch_size = 0;  // Default: 0 = no cap on examples per batch.
  bool shuffle = true;         // Default: true. Shuffle within buckets and the order of batches.
  uint64_t seed = 1;           // Default: 1. With the epoch, fixes the order.
};

class BucketBatchSampler {
 public:
  // bucket_of[i]: the shape bucket of example i (e.g. its resolution); elements_of[i]: its size
  // in elements. An example larger than the budget on its own is an error naming it.
  static Result<BucketBatchSampler> Create(std::vector<int64_t> bucket_of,
                                           std::vector<int64_t> elements_of,
                                           const BucketingOptions& options);

  // The batches of one epoch: every example exactly once, each batch within one bucket and
  // within the budget.
  std::vector<std::vector<int64_t>> Epoch(int64_t epoch) const;

  // Padded elements of a batch (count x largest example).
  int64_t Cost(const std::vector<int64_t>& batch) const;
  int64_t size() const { return static_cast<int64_t>(bucket_of_.size()); }

 private:
  std::vector<int64_t> bucket_of_, elements_of_;
  BucketingOptions o_;
};

}  // namespace ronghe::data
