#include "ronghe/data/batch.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace ronghe::data {
namespace {

TensorData MixedImages() {
  TensorData d;
  d.x = torch::rand({4, 1, 28, 28});
  d.y = torch::arange(4);
  d.sides = {28, 56, 56, 112};
  return d;
}

Result<at::Tensor> GatherInputs(const TensorData& d, const std::vector<int64_t>& idx,
                                int64_t canvas = 0, float fill = 0) {
  ASSIGN_OR_RETURN(Batch b, GatherBatch(d, idx, canvas, fill));
  EXPECT_FALSE(b.lengths.defined());  // images never need lengths
  return b.x;
}

TEST(BatchTest, RendersOneSidePerBatch) {
  TensorData d = MixedImages();
  auto x = GatherInputs(d, {2, 1});
  ASSERT_TRUE(x.ok()) << x.status().message();
  EXPECT_EQ(x->sizes(), (std::vector<int64_t>{2, 1, 56, 56}));
  // Bilinear 2x upsampling keeps the mean brightness of the image.
  EXPECT_NEAR((*x)[0].mean().item<double>(), d.x[2].mean().item<double>(), 1e-3);
  auto native = GatherInputs(d, {0});
  ASSERT_TRUE(native.ok());
  EXPECT_TRUE(torch::equal(*native, d.x.narrow(0, 0, 1)));
  EXPECT_EQ(ElementsOf(d, 3), 112 * 112);
  EXPECT_EQ(MaxSize(d), 112);
}

TEST(BatchTest, MixedSidesNeedACanvas) {
  TensorData d = MixedImages();
  auto x = GatherInputs(d, {0, 3});
  ASSERT_FALSE(x.ok());
  EXPECT_NE(x.status().message().find("example 3 is 112 px, the batch is 28 px"), std::string::npos)
      << x.status().message();
  EXPECT_FALSE(GatherInputs(d, {9}).ok());
}

TEST(BatchTest, PadToMaxCentresEachImageOnTheCanvas) {
  TensorData d = MixedImages();
  auto x = GatherInputs(d, {0, 3, 1}, 112, -0.5f);
  ASSERT_TRUE(x.ok()) << x.status().message();
  EXPECT_EQ(x->sizes(), (std::vector<int64_t>{3, 1, 112, 112}));
  // Row 0: the 28 px image sits at offset 42, the rest is the blank value.
  EXPECT_TRUE(torch::equal((*x)[0].narrow(1, 42, 28).narrow(2, 42, 28), d.x[0]));
  EXPECT_EQ((*x)[0].narrow(1, 0, 42).eq(-0.5).all().item<bool>(), true);
  EXPECT_EQ((*x)[0].narrow(1, 70, 42).eq(-0.5).all().item<bool>(), true);
  // Row 1: the 112 px image fills it; row 2: the 56 px one at offset 28.
  EXPECT_TRUE(torch::equal((*x)[1], (*GatherInputs(d, {3}))[0]));
  EXPECT_TRUE(
      torch::equal((*x)[2].narrow(1, 28, 56).narrow(2, 28, 56), (*GatherInputs(d, {1}))[0]));
  auto small = GatherInputs(d, {3}, 56);
  EXPECT_FALSE(small.ok());
}

// Windows of 2, 4 and 4 steps stored left-aligned in 4 steps.
TEST(BatchTest, SequencesOfOneLengthNeedNoPaddingAndPaddedOnesCarryLengths) {
  TensorData d;
  d.x = torch::arange(24).to(torch::kFloat).reshape({3, 4, 2});
  d.y = torch::zeros({3, 1});
  d.lengths = {2, 4, 4};
  EXPECT_EQ(ElementsOf(d, 0), 4);
  EXPECT_EQ(ElementsOf(d, 1), 8);
  EXPECT_EQ(MaxSize(d), 4);
  auto same = GatherBatch(d, {1, 2});
  ASSERT_TRUE(same.ok()) << same.status().message();
  EXPECT_EQ(same->x.sizes(), (std::vector<int64_t>{2, 4, 2}));
  EXPECT_FALSE(same->lengths.defined());
  auto short_one = GatherBatch(d, {0});
  ASSERT_TRUE(short_one.ok());
  EXPECT_TRUE(
      torch::equal(short_one->x, d.x.narrow(0, 0, 1).narrow(1, 0, 2)));  // no padding at all
  auto mixed = GatherBatch(d, {0, 1});
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("example 1 is 4 steps, the batch is 2 steps"),
            std::string::npos)
      << mixed.status().message();
  auto padded = GatherBatch(d, {0, 1}, 4);
  ASSERT_TRUE(padded.ok()) << padded.status().message();
  EXPECT_EQ(padded->x.sizes(), (std::vector<int64_t>{2, 4, 2}));
  EXPECT_TRUE(torch::equal(padded->lengths, torch::tensor({2, 4}, torch::kInt64)));
}

TEST(BatchTest, BlankValueIsTheNormalisedZeroPixel) {
  EXPECT_FLOAT_EQ(BlankValue({{"kind", "image"}, {"mean", 0.25}, {"std", 0.5}}), -0.5f);
  EXPECT_FLOAT_EQ(BlankValue({{"kind", "table"}}), 0.0f);
}

}  // namespace
}  // namespace ronghe::data
