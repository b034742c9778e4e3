#include "ronghe/base/config.h"

#include <gtest/gtest.h>

namespace ronghe {
namespace {

const char* kText = R"(
[train]
lr = 0.01
epochs = 3
hidden = [64, 32]
optimizer = "adam"
[data]
name = "lending_club"
)";

TEST(ConfigTest, ReadsTypedValues) {
  auto cfg = Config::Parse(kText, "job.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  double lr = 0;
  int epochs = 0;
  std::vector<int64_t> hidden;
  std::string opt, name, missing = "default";
  ASSERT_TRUE(cfg->Get("train.lr", &lr).ok());
  ASSERT_TRUE(cfg->Get("train.epochs", &epochs).ok());
  ASSERT_TRUE(cfg->Get("train.hidden", &hidden).ok());
  ASSERT_TRUE(cfg->Get("train.optimizer", &opt).ok());
  ASSERT_TRUE(cfg->Get("data.name", &name).ok());
  ASSERT_TRUE(cfg->Get("data.absent", &missing).ok());
  EXPECT_DOUBLE_EQ(lr, 0.01);
  EXPECT_EQ(epochs, 3);
  EXPECT_EQ(hidden, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(opt, "adam");
  EXPECT_EQ(missing, "default");
  EXPECT_TRUE(cfg->CheckNoUnknownKeys().ok());
}

TEST(ConfigTest, KeysListsATablesKeys) {
  auto cfg = Config::Parse(kText, "job.toml");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->Keys("train"), (std::vector<std::string>{"epochs", "hidden", "lr", "optimizer"}));
  EXPECT_EQ(cfg->Keys(""), (std::vector<std::string>{"data", "train"}));
  EXPECT_TRUE(cfg->Keys("absent").empty());
  EXPECT_TRUE(cfg->Keys("train.lr").empty());  // a value, not a table
}

TEST(ConfigTest, UnknownKeyNamesKeyAndFile) {
  auto cfg = Config::Parse("[train]\nlr = 0.1\nlrr = 0.2\n", "job.toml");
  ASSERT_TRUE(cfg.ok());
  double lr;
  ASSERT_TRUE(cfg->Get("train.lr", &lr).ok());
  Status s = cfg->CheckNoUnknownKeys();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("job.toml"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("train.lrr"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("line 3"), std::string::npos) << s.message();
}

TEST(ConfigTest, WrongTypeNamesKey) {
  auto cfg = Config::Parse("[train]\nepochs = \"three\"\n", "job.toml");
  ASSERT_TRUE(cfg.ok());
  int epochs = 0;
  Status s = cfg->Get("train.epochs", &epochs);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("job.toml: train.epochs"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("expected an integer, got a string"), std::string::npos);
  // A float where an integer belongs is also an error, not a silent truncation.
  auto cfg2 = Config::Parse("[train]\nepochs = 2.5\n", "job.toml");
  EXPECT_FALSE(cfg2->Get("train.epochs", &epochs).ok());
}

TEST(ConfigTest, SyntaxErrorHasLineAndColumn) {
  auto cfg = Config::Parse("[train\nlr = 1\n", "bad.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message().rfind("bad.toml:1:", 0), 0u) << cfg.status().message();
}

TEST(ConfigTest, OverridesWinAndAreTyped) {
  auto cfg = Config::Parse(kText, "job.toml");
  ASSERT_TRUE(cfg.ok());
  ASSERT_TRUE(cfg->ApplyOverride("train.lr=0.5").ok());
  ASSERT_TRUE(cfg->ApplyOverride("train.optimizer=sgd").ok());  // bare string
  ASSERT_TRUE(cfg->ApplyOverride("model.kind=\"mlp\"").ok());   // new table
  double lr = 0;
  std::string opt, kind;
  ASSERT_TRUE(cfg->Get("train.lr", &lr).ok());
  ASSERT_TRUE(cfg->Get("train.optimizer", &opt).ok());
  ASSERT_TRUE(cfg->Get("model.kind", &kind).ok());
  EXPECT_DOUBLE_EQ(lr, 0.5);
  EXPECT_EQ(opt, "sgd");
  EXPECT_EQ(kind, "mlp");
  EXPECT_FALSE(cfg->ApplyOverride("novalue").ok());
  for (auto k : {"data", "train.epochs", "train.hidden"}) cfg->MarkKnown(k);
  ASSERT_TRUE(cfg->ApplyOverride("train.typo=1").ok());
  Status s = cfg->CheckNoUnknownKeys();
  EXPECT_NE(s.message().find("--set"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ronghe
