#include "ronghe/data/bucketing.h"

#include <gtest/gtest.h>

#include <random>

namespace ronghe::data {
namespace {

// Three "scanners": 28, 56 and 112 pixels square, assigned at random.
void MixedSizes(int64_t n, std::vector<int64_t>* bucket, std::vector<int64_t>* elements) {
  std::mt19937_64 rng(5);
  const int64_t sides[] = {28, 56, 112};
  for (int64_t i = 0; i < n; ++i) {
    int64_t s = sides[rng() % 3];
    bucket->push_back(s);
    elements->push_back(s * s);
  }
}

TEST(BucketingTest, EveryExampleOncePerEpochAndNoBatchOverBudget) {
  std::vector<int64_t> bucket, elements;
  MixedSizes(1000, &bucket, &elements);
  BucketingOptions o{.max_elements = 64 * 28 * 28, .max_batch_size = 0, .shuffle = true, .seed = 3};
  auto s = BucketBatchSampler::Create(bucket, elements, o);
  ASSERT_TRUE(s.ok());
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int> seen(1000, 0);
    for (const auto& b : s->Epoch(epoch)) {
      ASSERT_FALSE(b.empty());
      EXPECT_LE(s->Cost(b), o.max_elements);
      for (int64_t i : b) {
        ++seen[i];
        EXPECT_EQ(bucket[i], bucket[b[0]]);  // one shape per batch: no padding at all
      }
    }
    for (int c : seen) ASSERT_EQ(c, 1);
  }
  EXPECT_NE(s->Epoch(0), s->Epoch(1));  // reshuffled per epoch
  EXPECT_EQ(s->Epoch(2), s->Epoch(2));  // and reproducible
}

TEST(BucketingTest, BatchesFillTheBudgetInsteadOfPaddingToTheLargest) {
  std::vector<int64_t> bucket, elements;
  MixedSizes(3000, &bucket, &elements);
  const int64_t budget = 64 * 112 * 112;
  auto s = BucketBatchSampler::Create(bucket, elements, {.max_elements = budget});
  ASSERT_TRUE(s.ok());
  int64_t padded = 0, batches = 0;
  for (const auto& b : s->Epoch(0)) padded += s->Cost(b), ++batches;
  int64_t real = 0;
  for (int64_t e : elements) real += e;
  EXPECT_EQ(padded, real);                // equal shapes per bucket: nothing padded
  EXPECT_LT(batches, 3000 / 64 + 3 * 2);  // small images travel many to a batch
}

TEST(BucketingTest, VariableLengthsPayForTheirLongestMemberAndCapsHold) {
  std::vector<int64_t> bucket(50, 0), elements;
  for (int i = 0; i < 50; ++i) elements.push_back(10 + i);  // sequence lengths, one bucket
  auto s = BucketBatchSampler::Create(bucket, elements, {.max_elements = 200, .max_batch_size = 3});
  ASSERT_TRUE(s.ok());
  int64_t total = 0;
  for (const auto& b : s->Epoch(0)) {
    EXPECT_LE(s->Cost(b), 200);
    EXPECT_LE(b.size(), 3u);
    total += static_cast<int64_t>(b.size());
  }
  EXPECT_EQ(total, 50);
}

TEST(BucketingTest, RefusesExamplesLargerThanTheBudget) {
  auto s = BucketBatchSampler::Create({0, 0}, {10, 500}, {.max_elements = 100});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("example 1"), std::string::npos);
  EXPECT_FALSE(BucketBatchSampler::Create({0}, {1}, {.max_elements = 0}).ok());
}

}  // namespace
}  // namespace ronghe::data
