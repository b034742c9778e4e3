// Runs the real `ronghe` binary for end-to-end tests.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ronghe::testing {

struct CmdResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out, err;
};

std::string RongheBinary();
// A fresh home folder whose data/ links to the data fetched for the whole suite.
std::string FreshHome(const std::string& name);
CmdResult RunRonghe(const std::string& home, const std::vector<std::string>& args);
// Starts the binary without waiting; output goes to home/<log>.stdout and .stderr
// (home/stdout and home/stderr when `log` is empty).
pid_t SpawnRonghe(const std::string& home, const std::vector<std::string>& args,
                  const std::string& log = "");
std::string SourcePath(const std::string& rel);
// A file's contents, or "" when it cannot be read (for failure messages).
std::string Slurp(const std::string& path);
// The port a spawned server announces on its stdout ("on http(s)://127.0.0.1:PORT"), or 0 when
// it exits first or says nothing within a minute.
int WaitForPort(pid_t pid, const std::string& stdout_file);
// Exit code, -signal when killed, or -1000 after `seconds` (the process is then SIGKILLed).
int WaitForExit(pid_t pid, double seconds);

}  // namespace ronghe::testing
