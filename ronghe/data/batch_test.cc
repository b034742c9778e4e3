#include "ronghe/data/batch.h"

#include <torch/torch.h>

#include <map>

#include <gtest/gtest.h>

#include "ronghe/base/file.h"

namespace ronghe::data {
namespace {

TensorData MixedImages() {
  TensorData d;
  d.x = torch::rand({4, 1, 28, 28});
  d.y = torch::arange(4);
  d.sides = {28, 56, 56, 112};
  return d;
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
  EXPECT_EQ(MaxSide(d), 112);
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
  EXPECT_TRUE(torch::equal((*x)[2].narrow(1, 28, 56).narrow(2, 28, 56), (*GatherInputs(d, {1}))[0]));
  auto small = GatherInputs(d, {3}, 56);
  EXPECT_FALSE(small.ok());
}

TEST(BatchTest, BlankValueIsTheNormalisedZeroPixel) {
  EXPECT_FLOAT_EQ(BlankValue({{"kind", "image"}, {"mean", 0.25}, {"std", 0.5}}), -0.5f);
  EXPECT_FLOAT_EQ(BlankValue({{"kind", "table"}}), 0.0f);
}

Result<DataOptions> Parse(const std::string& toml) {
  ASSIGN_OR_RETURN(Config cfg, Config::Parse(toml, "test.toml"));
  DataOptions o;
  RETURN_IF_ERROR(ParseDataOptions(cfg, &o));
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  return o;
}

// The imaging example's data: Fashion-MNIST, each image at 28, 56 or 112 px by a seeded rule.
TEST(BatchTest, FashionMnistAtThreeResolutions) {
  const char* toml = "[data]\ndataset = \"fashion-mnist\"\nlimit_train = 3000\nresolutions = [28, 56, 112]\n";
  auto o = Parse(toml);
  ASSERT_TRUE(o.ok()) << o.status().message();
  auto d = LoadData(*o, ResolveHome());
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->train.sides.size(), 3000u);
  ASSERT_EQ(d->test.sides.size(), 10000u);
  std::map<int64_t, int> count;
  for (int64_t s : d->test.sides) ++count[s];
  ASSERT_EQ(count.size(), 3u);
  for (auto [side, n] : count) EXPECT_NEAR(n, 3333, 200) << side;
  // An image keeps its side whatever else is loaded: the rule reads its index in the file.
  o->limit_train = 1000;
  auto fewer = LoadData(*o, ResolveHome());
  ASSERT_TRUE(fewer.ok());
  EXPECT_EQ(std::vector<int64_t>(d->train.sides.begin(), d->train.sides.begin() + 1000), fewer->train.sides);
  EXPECT_EQ(d->test.sides, fewer->test.sides);
  // Another seed, other sides; the manifest round trip keeps the list.
  o->seed = 7;
  auto other = LoadData(*o, ResolveHome());
  ASSERT_TRUE(other.ok());
  EXPECT_NE(d->test.sides, other->test.sides);
  auto back = DataOptions::FromJson(o->ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->resolutions, (std::vector<int64_t>{28, 56, 112}));

  auto bad = Parse("[data]\ndataset = \"fashion-mnist\"\nresolutions = [28, 4]\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("data.resolutions"), std::string::npos);
  auto table = Parse("[data]\ndataset = \"breast_cancer\"\nresolutions = [28]\n");
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.status().message().find("image data sets only"), std::string::npos);
}

}  // namespace
}  // namespace ronghe::data
