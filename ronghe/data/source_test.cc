// Loads the real data sets fetched by scripts/fetch-data.sh (make test fetches them first).
#include "ronghe/data/source.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "ronghe/base/file.h"
#include "ronghe/data/datasets.h"
#include "ronghe/data/split.h"

namespace ronghe::data {
namespace {

Result<DataOptions> Parse(const std::string& toml) {
  ASSIGN_OR_RETURN(Config cfg, Config::Parse(toml, "test.toml"));
  DataOptions o;
  RETURN_IF_ERROR(ParseDataOptions(cfg, &o));
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  return o;
}

TEST(SourceTest, MissingDataNamesTheFetchCommand) {
  auto o = Parse("[data]\ndataset = \"lending_club\"\n");
  ASSERT_TRUE(o.ok());
  auto d = LoadData(*o, ::testing::TempDir() + "/empty-home");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(d.status().message().find("run `ronghe data fetch lending_club`"), std::string::npos)
      << d.status().message();
}

TEST(SourceTest, ConfigErrorsNameTheKey) {
  auto bad = Parse("[data]\ndataset = \"lendingclub\"\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("test.toml: data.dataset"), std::string::npos);
  auto split = Parse("[data]\ndataset = \"fashion-mnist\"\nsplit = [0.8, 0.1, 0.1]\n");
  EXPECT_NE(split.status().message().find("data.split"), std::string::npos);
  auto sum = Parse("[data]\ndataset = \"lending_club\"\nsplit = [0.8, 0.1, 0.2]\n");
  EXPECT_NE(sum.status().message().find("sum to 1"), std::string::npos);
  auto typo = Parse("[data]\ndataset = \"lending_club\"\nlabell = \"x\"\n");
  EXPECT_NE(typo.status().message().find("unknown key 'data.labell'"), std::string::npos);
}

TEST(SourceTest, LendingClubTableWithStratifiedSplit) {
  auto o = Parse("[data]\ndataset = \"lending_club\"\n");
  ASSERT_TRUE(o.ok());
  auto d = LoadData(*o, ResolveHome());
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->task, Task::kBinary);
  EXPECT_EQ(d->train.size() + d->val.size() + d->test.size(), 9857);
  EXPECT_EQ(d->train.y.sum().item<int64_t>() + d->val.y.sum().item<int64_t>() +
                d->test.y.sum().item<int64_t>(),
            517);
  // Standardised on the training split: mean ~0, std ~1 over numeric training columns.
  int64_t n_numeric = static_cast<int64_t>(d->preprocessing["numeric"].size());
  EXPECT_EQ(n_numeric, 17);
  auto num = d->train.x.narrow(1, 0, n_numeric);
  EXPECT_LT(num.mean(0).abs().max().item<float>(), 1e-3);
  EXPECT_EQ(d->data_sha256.size(), 64u);
  // Re-applying the stored statistics reproduces the same test inputs.
  auto again = LoadData(*o, ResolveHome(), &d->preprocessing);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(torch::equal(again->test.x, d->test.x));
  // The serialised options round-trip.
  auto back = DataOptions::FromJson(o->ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ToJson(), o->ToJson());
}

TEST(SourceTest, BreastCancerAndSensorAndTaylor) {
  auto bc = LoadData(*Parse("[data]\ndataset = \"breast_cancer\"\n"), ResolveHome());
  ASSERT_TRUE(bc.ok()) << bc.status().message();
  EXPECT_EQ(bc->input_shape, (std::vector<int64_t>{30}));
  EXPECT_EQ(bc->train.size() + bc->val.size() + bc->test.size(), 569);
  auto sensor = LoadData(*Parse("[data]\ndataset = \"sensor\"\n"), ResolveHome());
  ASSERT_TRUE(sensor.ok()) << sensor.status().message();
  EXPECT_EQ(sensor->input_shape, (std::vector<int64_t>{3}));
  auto taylor =
      LoadData(*Parse("[data]\ndataset = \"taylor\"\n[data.window]\ninput = 48\nhorizon = 2\n"),
               ResolveHome());
  ASSERT_TRUE(taylor.ok()) << taylor.status().message();
  EXPECT_EQ(taylor->task, Task::kRegression);
  EXPECT_EQ(taylor->train.x.sizes(), (std::vector<int64_t>{2822 - 50 + 1, 48, 1}));
  EXPECT_EQ(taylor->train.y.size(1), 2);
}

// The imaging example's data: Fashion-MNIST, each image at 28, 56 or 112 px by a seeded rule.
TEST(SourceTest, FashionMnistAtThreeResolutions) {
  const char* toml =
      "[data]\ndataset = \"fashion-mnist\"\nlimit_train = 3000\nresolutions = [28, 56, 112]\n";
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
  EXPECT_EQ(std::vector<int64_t>(d->train.sides.begin(), d->train.sides.begin() + 1000),
            fewer->train.sides);
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

// Taylor's windows with histories of 12, 24 or 48 half-hours: each keeps its most recent points.
TEST(SourceTest, TaylorWindowsOfMixedLengths) {
  const char* base = "[data]\ndataset = \"taylor\"\n[data.window]\ninput = 48\nhorizon = 2\n";
  auto full = LoadData(*Parse(base), ResolveHome());
  ASSERT_TRUE(full.ok()) << full.status().message();
  auto o = Parse(std::string(base) + "lengths = [12, 24, 48]\n");
  ASSERT_TRUE(o.ok()) << o.status().message();
  auto d = LoadData(*o, ResolveHome());
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d->train.lengths.size(), static_cast<size_t>(d->train.size()));
  ASSERT_EQ(d->test.lengths.size(), static_cast<size_t>(d->test.size()));
  std::map<int64_t, int> count;
  for (int64_t l : d->train.lengths) ++count[l];
  ASSERT_EQ(count.size(), 3u);
  for (auto [len, n] : count) EXPECT_GT(n, d->train.size() / 5) << len;
  for (int64_t w : {0, 1, 2, 100}) {
    int64_t len = d->train.lengths[w];
    EXPECT_TRUE(
        torch::equal(d->train.x[w].narrow(0, 0, len), full->train.x[w].narrow(0, 48 - len, len)))
        << w;
    if (len < 48) {
      EXPECT_EQ(d->train.x[w].narrow(0, len, 48 - len).abs().sum().item<float>(), 0.0f) << w;
    }
  }
  EXPECT_TRUE(torch::equal(d->train.y, full->train.y));  // same targets, shorter histories
  auto back = DataOptions::FromJson(o->ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->window.lengths, (std::vector<int64_t>{12, 24, 48}));
  auto bad = Parse(std::string(base) + "lengths = [12, 96]\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("data.window.lengths"), std::string::npos)
      << bad.status().message();
}

TEST(SourceTest, FashionMnistOfficialTestSet) {
  auto d =
      LoadData(*Parse("[data]\ndataset = \"fashion-mnist\"\nlimit_train = 1000\n"), ResolveHome());
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->train.x.sizes(), (std::vector<int64_t>{1000, 1, 28, 28}));
  EXPECT_EQ(d->val.size(), 6000);
  EXPECT_EQ(d->test.size(), 10000);
  EXPECT_EQ(d->num_classes, 10);
}

}  // namespace
}  // namespace ronghe::data

namespace ronghe::data {
namespace {

// The regional non-IID split the federated examples use: lending_club's addr_state -> 4 regions.
TEST(SourceTest, LendingClubPartitionsByRegion) {
  auto t = ReadCsv(ResolveHome() + "/data/lending_club/lending_club.csv");
  ASSERT_TRUE(t.ok()) << t.status().message();
  int col = *t->ColumnIndex("addr_state");
  std::vector<std::string> states;
  for (const auto& r : t->rows) states.push_back(r[col]);
  auto p = PartitionByValue(states, UsCensusRegions());
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->names, (std::vector<std::string>{"Midwest", "Northeast", "South", "West"}));
  size_t total = 0;
  for (const auto& idx : p->indices) {
    EXPECT_GT(idx.size(), 1000u);
    total += idx.size();
  }
  EXPECT_EQ(total, 9857u);
}

}  // namespace
}  // namespace ronghe::data
