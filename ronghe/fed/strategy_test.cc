#include "ronghe/fed/strategy.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ronghe::fed {
namespace {

TEST(StrategyTest, FedAvgAddsTheMeanUpdateScaledByLr) {
  auto s = ServerOptimizer::Create({.name = "fedavg", .lr = 0.5}, 3);
  ASSERT_TRUE(s.ok());
  std::vector<float> w = {1, 2, 3};
  ASSERT_TRUE(s->Apply({2, -2, 0}, &w).ok());
  EXPECT_EQ(w, (std::vector<float>{2, 1, 3}));
  EXPECT_FALSE(s->Apply({1, 2}, &w).ok());
}

TEST(StrategyTest, FedAdamAndFedYogiFollowReddiEtAl) {
  for (std::string name : {"fedadam", "fedyogi"}) {
    ServerOptimizerOptions o{.name = name, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.99, .tau = 1e-3};
    auto s = ServerOptimizer::Create(o, 1);
    ASSERT_TRUE(s.ok());
    std::vector<float> w = {0};
    ASSERT_TRUE(s->Apply({0.5f}, &w).ok());
    double m = 0.1 * 0.5, d2 = 0.25, v0 = 1e-6;
    double v =
        name == "fedadam" ? 0.99 * v0 + 0.01 * d2 : v0 - 0.01 * d2 * ((v0 - d2) > 0 ? 1 : -1);
    EXPECT_NEAR(w[0], 0.1 * m / (std::sqrt(v) + 1e-3), 1e-6) << name;
  }
  EXPECT_FALSE(ServerOptimizer::Create({.name = "fedsgd"}, 1).ok());
}

TEST(StrategyTest, ClipL2BoundsTheNorm) {
  std::vector<float> v = {3, 4};
  EXPECT_NEAR(ClipL2(&v, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(std::hypot(v[0], v[1]), 1.0, 1e-6);
  std::vector<float> small = {0.1f, 0.1f};
  ClipL2(&small, 1.0);
  EXPECT_FLOAT_EQ(small[0], 0.1f);
}

TEST(StrategyTest, GaussianNoiseHasTheStatedSpread) {
  std::vector<float> v(200000, 0.0f);
  AddGaussianNoise(&v, 2.0);
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += static_cast<double>(x) * x;
  double mean = s / v.size(), var = s2 / v.size() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(std::sqrt(var), 2.0, 0.03);
}

TEST(StrategyTest, EpsilonGrowsWithRoundsAndShrinksWithNoise) {
  double e1 = GaussianEpsilon(1.0, 10, 1e-5), e2 = GaussianEpsilon(1.0, 100, 1e-5);
  double e3 = GaussianEpsilon(2.0, 100, 1e-5);
  EXPECT_LT(e1, e2);
  EXPECT_LT(e3, e2);
  // One Gaussian mechanism with z = 1: the RDP bound at delta 1e-5 is about 5.3 (min over alpha
  // of alpha/2 + ln(1e5)/(alpha-1), at alpha = 1 + sqrt(2 ln 1e5)).
  double a = 1 + std::sqrt(2 * std::log(1e5));
  EXPECT_NEAR(GaussianEpsilon(1.0, 1, 1e-5), a / 2 + std::log(1e5) / (a - 1), 1e-3);
}

}  // namespace
}  // namespace ronghe::fed
