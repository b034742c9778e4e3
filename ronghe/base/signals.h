// Graceful stop on SIGINT/SIGTERM for long-running commands, whichever thread the kernel picks.
//
// Blocking the signals and sigwait()ing works only if every thread blocks them, and threads that
// libraries start before main() (OpenBLAS, OpenMP pools) do not. Here a handler is installed
// instead: any thread may receive the signal; the handler only writes its number to a pipe
// (async-signal-safe), and a watcher thread reads the pipe and calls `on_signal` outside signal
// context. A second signal calls it again (callers may choose to exit at once then).
#pragma once

#include <functional>
#include <memory>

namespace ronghe {

class SignalWatcher {
 public:
  // Installs the handlers; one watcher per process at a time.
  explicit SignalWatcher(std::function<void(int signal)> on_signal);
  // Restores the default actions and joins the watcher thread.
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  // The first signal received, 0 if none.
  int received() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe
