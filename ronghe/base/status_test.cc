#include "ronghe/base/status.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace ronghe {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::OK().ok());
  Status s = NotFound("x.rhm: no such file");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.WithContext("loading").message(), "loading: x.rhm: no such file");
  EXPECT_TRUE(Status::OK().WithContext("ignored").ok());
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd: 3");
}

TEST(StatusTest, CatchAllTurnsExceptionsIntoOneLine) {
  EXPECT_TRUE(CatchAll([] { return Status::OK(); }).ok());
  EXPECT_EQ(CatchAll([] { return NotFound("x"); }).message(), "x");
  // LibTorch's errors carry a backtrace after the first line: only the first line is kept.
  Status st = CatchAll([]() -> Status {
    throw std::runtime_error("shape mismatch [2] vs [3]\nException raised from ...");
  });
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_EQ(st.message(), "unexpected error: shape mismatch [2] vs [3]");
  st = CatchAll([]() -> Status { throw 42; });
  EXPECT_EQ(st.message(), "unexpected error of unknown type");
}

}  // namespace
}  // namespace ronghe
