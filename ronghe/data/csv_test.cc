#include "ronghe/data/csv.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace ronghe::data {
namespace {

TEST(CsvTest, ParsesQuotesAndReportsLines) {
  auto t = ParseCsv("a,b,c\n1,\"x, y\",\"he said \"\"hi\"\"\"\r\n2,z,w\n", "t.csv");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->columns, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(t->rows.size(), 2u);
  EXPECT_EQ(t->rows[0][1], "x, y");
  EXPECT_EQ(t->rows[0][2], "he said \"hi\"");
  EXPECT_EQ(t->line_of_row[1], 3);
  auto bad = ParseCsv("a,b\n1,2\n3\n", "t.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "t.csv:3: expected 2 fields, found 1");
  EXPECT_FALSE(ParseCsv("a\n\"open\n", "t.csv").ok());
  auto headless = ParseCsv("junk line\n1,2\n3,4\n", "h.csv", {false, 1, ','});
  ASSERT_TRUE(headless.ok());
  EXPECT_EQ(headless->columns, (std::vector<std::string>{"col0", "col1"}));
  EXPECT_EQ(headless->rows.size(), 2u);
}

TEST(CsvTest, PreprocessingFitsOnTrainRowsOnly) {
  auto t = ParseCsv("x,color,y\n1,red,bad\n3,blue,good\nNA,red,good\n100,green,bad\n", "t.csv");
  ASSERT_TRUE(t.ok());
  TableSchema schema;
  schema.label = "y";
  schema.positive = "bad";
  schema.categorical = {"color"};
  auto prep = FitTable(*t, schema, {0, 1, 2});  // row 3 (x=100, green) is not training data
  ASSERT_TRUE(prep.ok()) << prep.status().message();
  ASSERT_EQ(prep->numeric.size(), 1u);
  EXPECT_DOUBLE_EQ(prep->numeric[0].mean, 2.0);  // NA skipped, 100 unseen
  EXPECT_DOUBLE_EQ(prep->numeric[0].std, 1.0);
  EXPECT_EQ(prep->categorical[0].values, (std::vector<std::string>{"blue", "red"}));
  EXPECT_EQ(prep->num_features(), 1 + 3);
  auto x = TransformTable(*t, *prep, {0, 2, 3});
  ASSERT_TRUE(x.ok());
  auto a = x->accessor<float, 2>();
  EXPECT_FLOAT_EQ(a[0][0], -1.0f);  // (1 - 2) / 1
  EXPECT_FLOAT_EQ(a[0][2], 1.0f);   // red
  EXPECT_FLOAT_EQ(a[1][0], 0.0f);   // NA -> training mean
  EXPECT_FLOAT_EQ(a[2][0], 98.0f);
  EXPECT_FLOAT_EQ(a[2][3], 1.0f);  // green unseen -> the extra slot
  auto y = EncodeLabels(*t, schema, {});
  EXPECT_EQ(*y, (std::vector<int64_t>{1, 0, 0, 1}));
  auto round = TablePreprocessing::FromJson(prep->ToJson());
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->ToJson(), prep->ToJson());
}

TEST(CsvTest, NonNumericCellNamesFileLineAndColumn) {
  auto t = ParseCsv("x,y\n1,a\noops,b\n", "t.csv");
  TableSchema schema;
  schema.label = "y";
  auto prep = FitTable(*t, schema, {0, 1});
  ASSERT_FALSE(prep.ok());
  EXPECT_NE(prep.status().message().find("t.csv:3: column 'x': 'oops' is not a number"),
            std::string::npos)
      << prep.status().message();
  schema.label = "nope";
  EXPECT_NE(FitTable(*t, schema, {0}).status().message().find("no column 'nope'"),
            std::string::npos);
}

}  // namespace
}  // namespace ronghe::data
