// The examples reach their stated quality (slow: label "slow"; `ctest -LE slow` skips them).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ronghe/cli/test_util.h"
#include "ronghe/nn/artifact.h"

namespace ronghe::testing {
namespace {

nlohmann::json TestMetrics(const std::string& home) {
  auto a = nn::LoadArtifact(home + "/runs/1/model.rhm");
  EXPECT_TRUE(a.ok()) << a.status().message();
  return a.ok() ? a->manifest["metrics"]["test"] : nlohmann::json();
}

TEST(ExamplesTest, FashionMnistCnnReaches88Percent) {
  std::string home = FreshHome("fashion");
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/fashion_mnist/cnn.toml"), "--progress", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  double acc = TestMetrics(home)["accuracy"].get<double>();
  RecordProperty("test_accuracy", std::to_string(acc));
  EXPECT_GE(acc, 0.88);
}

TEST(ExamplesTest, LendingClubMlpBeatsAConstantPredictor) {
  std::string home = FreshHome("lending");
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/lending_club/mlp.toml"), "--progress", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = TestMetrics(home);
  double auc = m["roc_auc"].get<double>();
  RecordProperty("test_roc_auc", std::to_string(auc));
  // A constant score has ROC-AUC 0.5 and PR-AUC equal to the bad-loan rate (5.2%).
  EXPECT_GE(auc, 0.65);
  EXPECT_GE(m["pr_auc"].get<double>(), 0.08);
}

TEST(ExamplesTest, TaylorLstmForecastsWithinFivePercent) {
  std::string home = FreshHome("taylor");
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/taylor/lstm.toml"), "--progress", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(TestMetrics(home)["mape"].get<double>(), 5.0);
}

}  // namespace
}  // namespace ronghe::testing
