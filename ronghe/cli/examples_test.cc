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
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/fashion_mnist/cnn.toml"),
                            "--progress", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  double acc = TestMetrics(home)["accuracy"].get<double>();
  RecordProperty("test_accuracy", std::to_string(acc));
  EXPECT_GE(acc, 0.88);
}

TEST(ExamplesTest, LendingClubMlpBeatsAConstantPredictor) {
  std::string home = FreshHome("lending");
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/lending_club/mlp.toml"),
                            "--progress", "off"});
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
  auto r = RunRonghe(
      home, {"train", "--config", SourcePath("examples/taylor/lstm.toml"), "--progress", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(TestMetrics(home)["mape"].get<double>(), 5.0);
}

// The imaging example as its header runs it: two data-parallel workers, bf16 autocast, three
// resolutions in one CNN. Every resolution must be learned, not just the native one.
TEST(ExamplesTest, ImagingMixedResolutionsTwoProcessesBf16) {
  std::string home = FreshHome("imaging");
  auto r = RunRonghe(home, {"train", "--config", SourcePath("examples/imaging/multires.toml"),
                            "--nproc", "2", "--precision", "bf16", "--progress", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("over 2 processes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resolution   test accuracy\n  28 px"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" 112 px      0."), std::string::npos) << r.out;
  auto m = TestMetrics(home);
  RecordProperty("test_accuracy", m["accuracy"].dump());
  EXPECT_GE(m["accuracy"].get<double>(), 0.78);
  for (const char* k : {"accuracy_28px", "accuracy_56px", "accuracy_112px"}) {
    ASSERT_TRUE(m.contains(k)) << m.dump();
    EXPECT_GE(m[k].get<double>(), 0.75) << k;
  }
  // `ronghe eval` rebuilds the mixed-resolution test set from the manifest and agrees.
  auto e = RunRonghe(home, {"eval", "--model", home + "/runs/1/model.rhm"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.out.find("accuracy_112px="), std::string::npos) << e.out;
}

}  // namespace
}  // namespace ronghe::testing
