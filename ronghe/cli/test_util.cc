#include "ronghe/cli/test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "ronghe/base/file.h"

extern char** environ;

namespace ronghe::testing {

std::string RongheBinary() { return std::string(RONGHE_BINARY_DIR) + "/ronghe/cli/ronghe"; }
std::string SourcePath(const std::string& rel) { return std::string(RONGHE_SOURCE_DIR) + "/" + rel; }

std::string FreshHome(const std::string& name) {
  std::string shared_data = ResolveHome() + "/data";
  std::string home = std::filesystem::temp_directory_path().string() + "/ronghe-test-" + name + "-" +
                     std::to_string(::getpid());
  std::filesystem::remove_all(home);
  std::filesystem::create_directories(home);
  std::filesystem::create_directory_symlink(shared_data, home + "/data");
  return home;
}

pid_t SpawnRonghe(const std::string& home, const std::vector<std::string>& args, const std::string& log) {
  const std::string out = log.empty() ? home + "/stdout" : home + "/" + log + ".stdout";
  const std::string err = log.empty() ? home + "/stderr" : home + "/" + log + ".stderr";
  std::vector<std::string> full = {RongheBinary(), "--home", home};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

CmdResult RunRonghe(const std::string& home, const std::vector<std::string>& args) {
  pid_t pid = SpawnRonghe(home, args);
  int status = 0;
  waitpid(pid, &status, 0);
  CmdResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(home + "/stdout").value();
  r.err = ReadFile(home + "/stderr").value();
  return r;
}

std::string Slurp(const std::string& path) {
  auto r = ReadFile(path);
  return r.ok() ? *r : "";
}

int WaitForExit(pid_t pid, double seconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < until) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1000;
}

}  // namespace ronghe::testing
