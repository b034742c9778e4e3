#include "ronghe/train/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ronghe::train {
namespace {

TEST(MetricsTest, BinaryKnownAnswers) {
  // scikit-learn's documented example: roc_auc_score = 0.75, average_precision_score = 0.8333.
  std::vector<float> s = {0.1f, 0.4f, 0.35f, 0.8f};
  std::vector<int64_t> y = {0, 0, 1, 1};
  EXPECT_NEAR(RocAuc(s, y), 0.75, 1e-12);
  EXPECT_NEAR(AveragePrecision(s, y), 0.833333333, 1e-6);
  auto m = BinaryMetrics(s, y, 0.5);
  EXPECT_DOUBLE_EQ(m["accuracy"], 0.75);  // predicts 0,0,0,1
  EXPECT_DOUBLE_EQ(m["precision"], 1.0);
  EXPECT_DOUBLE_EQ(m["recall"], 0.5);
  EXPECT_DOUBLE_EQ(m["fpr"], 0.0);
  EXPECT_NEAR(m["f1"], 2.0 / 3, 1e-12);
}

TEST(MetricsTest, TiesAndConstantPredictor) {
  std::vector<float> s(100, 0.3f);
  std::vector<int64_t> y(100, 0);
  for (int i = 0; i < 5; ++i) y[i * 20] = 1;
  EXPECT_DOUBLE_EQ(RocAuc(s, y), 0.5);             // a constant scores 0.5
  EXPECT_DOUBLE_EQ(AveragePrecision(s, y), 0.05);  // and the base rate
  EXPECT_TRUE(std::isnan(RocAuc(s, std::vector<int64_t>(100, 0))));
}

TEST(MetricsTest, MulticlassAndRegression) {
  EXPECT_DOUBLE_EQ(MulticlassMetrics({1, 2, 3, 0}, {1, 2, 0, 0})["accuracy"], 0.75);
  auto r = RegressionMetrics({110, 90, 100}, {100, 100, 100});
  EXPECT_NEAR(r["mae"], 20.0 / 3, 1e-12);
  EXPECT_NEAR(r["rmse"], std::sqrt(200.0 / 3), 1e-12);
  EXPECT_NEAR(r["mape"], 100.0 * 0.2 / 3, 1e-12);
}

}  // namespace
}  // namespace ronghe::train
