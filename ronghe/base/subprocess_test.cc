#include "ronghe/base/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "ronghe/base/file.h"

namespace ronghe {
namespace {

std::string TempPath(const std::string& name) {
  return std::filesystem::temp_directory_path().string() + "/ronghe-subprocess-" + name + "-" +
         std::to_string(::getpid());
}

TEST(SubprocessTest, ExitCodeAndOutputFile) {
  std::string out = TempPath("out");
  auto p = Subprocess::Spawn({.argv = {"sh", "-c", "echo hello; echo oops >&2; exit 3"},
                              .stdout_path = out,
                              .stderr_path = out});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto e = p->Wait();
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->ok());
  EXPECT_EQ(e->code, 3);
  EXPECT_EQ(e->AsInt(), 3);
  EXPECT_EQ(e->Describe(), "exited with code 3");
  EXPECT_EQ(*ReadFile(out), "hello\noops\n");
  std::filesystem::remove(out);
}

TEST(SubprocessTest, EnvironmentSetAndUnset) {
  std::string out = TempPath("env");
  ::setenv("RONGHE_SUBPROCESS_DROP", "1", 1);
  auto p =
      Subprocess::Spawn({.argv = {"sh", "-c", "echo \"$RONGHE_A/${RONGHE_SUBPROCESS_DROP:-gone}\""},
                         .env = {"RONGHE_A=set"},
                         .unset_env = {"RONGHE_SUBPROCESS_DROP"},
                         .stdout_path = out});
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->Wait()->ok());
  EXPECT_EQ(*ReadFile(out), "set/gone\n");
  ::unsetenv("RONGHE_SUBPROCESS_DROP");
  std::filesystem::remove(out);
}

TEST(SubprocessTest, WaitTimesOutThenKill) {
  auto p = Subprocess::Spawn({.argv = {"sleep", "30"}});
  ASSERT_TRUE(p.ok());
  auto e = p->Wait(0.05);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(p->Poll().has_value());
  p->Kill();
  auto done = p->Poll();
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->signaled);
  EXPECT_EQ(done->signal, SIGKILL);
  EXPECT_EQ(done->AsInt(), -SIGKILL);
}

TEST(SubprocessTest, MissingProgramIsAnError) {
  auto p = Subprocess::Spawn({.argv = {"/nonexistent/ronghe-no-such-program"}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("/nonexistent/ronghe-no-such-program"), std::string::npos);
}

TEST(SubprocessTest, ForkRunsTheFunction) {
  auto p = Subprocess::Fork([] { return 7; });
  ASSERT_TRUE(p.ok());
  auto e = p->Wait(30);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->code, 7);
}

TEST(SubprocessTest, WaitAnyChildReapsTheOneThatEnded) {
  auto fast = Subprocess::Fork([] { return 0; });
  ASSERT_TRUE(fast.ok());
  auto r = WaitAnyChild(30);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->first, fast->pid());
  EXPECT_TRUE(r->second.ok());
}

}  // namespace
}  // namespace ronghe
