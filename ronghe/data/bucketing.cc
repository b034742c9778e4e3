#include "ronghe/data/bucketing.h"

#include <algorithm>
#include <map>
#include <random>

namespace ronghe::data {

Result<BucketBatchSampler> BucketBatchSampler::Create(std::vector<int64_t> bucket_of,
                                                      std::vector<int64_t> elements_of,
                                                      const BucketingOptions& o) {
  if (bucket_of.size() != elements_of.size())
    return InvalidArgument("bucketing: one bucket and one size per example");
  if (o.max_elements <= 0) return InvalidArgument("bucketing: max_elements must be > 0");
  if (o.max_batch_size < 0) return InvalidArgument("bucketing: max_batch_size must be >= 0");
  for (size_t i = 0; i < elements_of.size(); ++i) {
    if (elements_of[i] <= 0)
      return InvalidArgument("bucketing: example " + std::to_string(i) + " has no elements");
    if (elements_of[i] > o.max_elements) {
      return InvalidArgument(
          "bucketing: example " + std::to_string(i) + " has " + std::to_string(elements_of[i]) +
          " elements, more than the batch budget of " + std::to_string(o.max_elements));
    }
  }
  BucketBatchSampler s;
  s.bucket_of_ = std::move(bucket_of);
  s.elements_of_ = std::move(elements_of);
  s.o_ = o;
  return s;
}

int64_t BucketBatchSampler::Cost(const std::vector<int64_t>& batch) const {
  int64_t largest = 0;
  for (int64_t i : batch) largest = std::max(largest, elements_of_[i]);
  return largest * static_cast<int64_t>(batch.size());
}

std::vector<std::vector<int64_t>> BucketBatchSampler::Epoch(int64_t epoch) const {
  std::mt19937_64 rng(o_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
  std::map<int64_t, std::vector<int64_t>> buckets;
  for (int64_t i = 0; i < size(); ++i) buckets[bucket_of_[i]].push_back(i);
  std::vector<std::vector<int64_t>> batches;
  for (auto& [key, members] : buckets) {
    if (o_.shuffle) std::shuffle(members.begin(), members.end(), rng);
    std::vector<int64_t> cur;
    int64_t largest = 0;
    for (int64_t i : members) {
      int64_t grown = std::max(largest, elements_of_[i]);
      bool full = (grown * static_cast<int64_t>(cur.size() + 1) > o_.max_elements) ||
                  (o_.max_batch_size > 0 && static_cast<int64_t>(cur.size()) == o_.max_batch_size);
      if (full && !cur.empty()) {
        batches.push_back(std::move(cur));
        cur.clear();
        grown = elements_of_[i];
      }
      cur.push_back(i);
      largest = grown;
    }
    if (!cur.empty()) batches.push_back(std::move(cur));
  }
  // Mixed order across buckets, so an epoch does not train on one resolution at a time.
  if (o_.shuffle) std::shuffle(batches.begin(), batches.end(), rng);
  return batches;
}

}  // namespace ronghe::data
