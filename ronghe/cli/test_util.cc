#include "ronghe/cli/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <regex>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/subprocess.h"

namespace ronghe::testing {

std::string RongheBinary() { return std::string(RONGHE_BINARY_DIR) + "/ronghe/cli/ronghe"; }
std::string SourcePath(const std::string& rel) {
  return std::string(RONGHE_SOURCE_DIR) + "/" + rel;
}

std::string FreshHome(const std::string& name) {
  std::string shared_data = ResolveHome() + "/data";
  std::string home = std::filesystem::temp_directory_path().string() + "/ronghe-test-" + name +
                     "-" + std::to_string(::getpid());
  std::filesystem::remove_all(home);
  std::filesystem::create_directories(home);
  std::filesystem::create_directory_symlink(shared_data, home + "/data");
  return home;
}

pid_t SpawnRonghe(const std::string& home, const std::vector<std::string>& args,
                  const std::string& log) {
  SpawnOptions o;
  o.stdout_path = log.empty() ? home + "/stdout" : home + "/" + log + ".stdout";
  o.stderr_path = log.empty() ? home + "/stderr" : home + "/" + log + ".stderr";
  o.argv = {RongheBinary(), "--home", home};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  auto p = Subprocess::Spawn(o);
  return p.ok() ? p->pid() : -1;
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

int WaitForPort(pid_t pid, const std::string& stdout_file) {
  const std::regex said(R"(on https?://127\.0\.0\.1:(\d+))");
  for (int i = 0; i < 3000; ++i) {
    std::smatch m;
    const std::string out = Slurp(stdout_file);
    if (std::regex_search(out, m, said)) return std::stoi(m[1]);
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}

int WaitForExit(pid_t pid, double seconds) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
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
