#include "ronghe/base/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace ronghe {
namespace {

TEST(FileTest, AtomicWriteSetsModeAndReadsBack) {
  std::string dir = ::testing::TempDir() + "/ronghe_file_test";
  ASSERT_TRUE(MakeDirs(dir).ok());
  std::string p = dir + "/secret.json";
  ASSERT_TRUE(WriteFileAtomic(p, "abc", 0600).ok());
  struct stat st;
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*ReadFile(p), "abc");
  ASSERT_TRUE(WriteFileAtomic(p, "defg", 0600).ok());
  EXPECT_EQ(*ReadFile(p), "defg");
  auto missing = ReadFile(dir + "/nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
}

TEST(FileTest, HomeResolution) {
  EXPECT_EQ(ResolveHome("/x"), "/x");
  setenv("RONGHE_HOME", "/from/env", 1);
  EXPECT_EQ(ResolveHome(), "/from/env");
  unsetenv("RONGHE_HOME");
}

}  // namespace
}  // namespace ronghe
