#include "ronghe/data/split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace ronghe::data {
namespace {

void ExpectCoverOnce(const std::vector<std::vector<int64_t>>& parts, int64_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& p : parts)
    for (int64_t i : p) seen.at(i)++;
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << "index " << i;
}

TEST(SplitTest, SeededDisjointAndDeterministic) {
  auto a = SplitSeeded(1000, {0.7, 0.2, 0.1}, 7);
  auto b = SplitSeeded(1000, {0.7, 0.2, 0.1}, 7);
  auto c = SplitSeeded(1000, {0.7, 0.2, 0.1}, 8);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->train.size(), 700u);
  EXPECT_EQ(a->val.size(), 200u);
  EXPECT_EQ(a->test.size(), 100u);
  ExpectCoverOnce({a->train, a->val, a->test}, 1000);
  EXPECT_EQ(a->train, b->train);
  EXPECT_NE(a->train, c->train);
  EXPECT_FALSE(SplitSeeded(10, {0.5, 0.6, 0.1}, 1).ok());
  EXPECT_FALSE(SplitSeeded(10, {0.5, 0.5}, 1).ok());
}

TEST(SplitTest, StratifiedKeepsRareClassShare) {
  std::vector<int64_t> labels(2000, 0);
  for (int i = 0; i < 100; ++i) labels[i * 20] = 1;  // 5% positives
  auto s = SplitSeeded(2000, {0.7, 0.15, 0.15}, 3, &labels);
  ASSERT_TRUE(s.ok());
  auto positives = [&](const std::vector<int64_t>& idx) {
    return std::count_if(idx.begin(), idx.end(), [&](int64_t i) { return labels[i] == 1; });
  };
  EXPECT_EQ(positives(s->train), 70);
  EXPECT_EQ(positives(s->val), 15);
  EXPECT_EQ(positives(s->test), 15);
  ExpectCoverOnce({s->train, s->val, s->test}, 2000);
}

TEST(PartitionTest, IidBalanced) {
  auto parts = PartitionIid(103, 5, 1);
  ASSERT_EQ(parts.size(), 5u);
  for (const auto& p : parts) EXPECT_TRUE(p.size() == 20 || p.size() == 21);
  ExpectCoverOnce(parts, 103);
}

TEST(PartitionTest, ByValueGroupsStatesIntoRegions) {
  std::vector<std::string> states = {"CA", "NY", "TX", "IL", "WA", "MA"};
  auto p = PartitionByValue(states, UsCensusRegions());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->names, (std::vector<std::string>{"Midwest", "Northeast", "South", "West"}));
  EXPECT_EQ(p->indices[1], (std::vector<int64_t>{1, 5}));  // NY, MA
  EXPECT_EQ(p->indices[3], (std::vector<int64_t>{0, 4}));  // CA, WA
  auto bad = PartitionByValue({"CA", "ZZ"}, UsCensusRegions());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'ZZ'"), std::string::npos);
  auto raw = PartitionByValue(states, {});
  EXPECT_EQ(raw->names.size(), 6u);
}

TEST(PartitionTest, BankRegionsSplitTheSouthInTwo) {
  auto g = NamedGrouping("us-bank-regions");
  ASSERT_TRUE(g.ok());
  auto p = PartitionByValue({"TX", "FL", "CA", "NY", "IL", "TN"}, *g);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->names,
            (std::vector<std::string>{"Central", "Midwest", "Northeast", "South", "West"}));
  EXPECT_EQ(p->indices[0], (std::vector<int64_t>{0, 5}));  // TX, TN
  EXPECT_EQ(g->size(), UsCensusRegions().size());          // every state still has a region
  EXPECT_FALSE(NamedGrouping("us-counties").ok());
}

TEST(PartitionTest, DirichletCoversAndSkews) {
  std::vector<int64_t> labels;
  for (int c = 0; c < 10; ++c) labels.insert(labels.end(), 300, c);
  auto skew = PartitionDirichlet(labels, 5, 0.1, 11, 10);
  auto flat = PartitionDirichlet(labels, 5, 1000.0, 11, 10);
  ASSERT_TRUE(skew.ok() && flat.ok());
  ExpectCoverOnce(*skew, 3000);
  ExpectCoverOnce(*flat, 3000);
  // Share of each part's majority class: strong skew at alpha 0.1, near 1/10 at alpha 1000.
  auto majority_share = [&](const std::vector<int64_t>& p) {
    std::vector<int> count(10, 0);
    for (int64_t i : p) count[labels[i]]++;
    return double(*std::max_element(count.begin(), count.end())) / p.size();
  };
  double skew_avg = 0, flat_avg = 0;
  for (int j = 0; j < 5; ++j) {
    skew_avg += majority_share((*skew)[j]) / 5;
    flat_avg += majority_share((*flat)[j]) / 5;
  }
  EXPECT_GT(skew_avg, 0.4);
  EXPECT_LT(flat_avg, 0.15);
  EXPECT_FALSE(PartitionDirichlet(labels, 5, 0, 1).ok());
}

}  // namespace
}  // namespace ronghe::data
