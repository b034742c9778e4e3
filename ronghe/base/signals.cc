#include "ronghe/base/signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>

namespace ronghe {

namespace {
std::atomic<int> g_write_fd{-1};

void OnSignal(int sig) {
  const int saved = errno;
  const int fd = g_write_fd.load();
  if (fd >= 0) {
    const unsigned char b = static_cast<unsigned char>(sig);
    [[maybe_unused]] ssize_t n = write(fd, &b, 1);
  }
  errno = saved;
}
}  // namespace

struct SignalWatcher::Impl {
  int fds[2] = {-1, -1};
  std::thread watcher;
  std::atomic<int> received{0};
  struct sigaction old_int {
  }, old_term{};
};

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal) : impl_(std::make_unique<Impl>()) {
  if (pipe2(impl_->fds, O_CLOEXEC) != 0) return;  // no pipe: signals keep their default action
  g_write_fd = impl_->fds[1];
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &impl_->old_int);
  sigaction(SIGTERM, &sa, &impl_->old_term);
  // Threads started before this (by libraries) may have blocked nothing; threads started by
  // earlier code that blocked these signals would never take them: unblock in this thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  Impl* impl = impl_.get();
  impl_->watcher = std::thread([impl, on_signal = std::move(on_signal)] {
    unsigned char b = 0;
    while (true) {
      ssize_t n = read(impl->fds[0], &b, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || b == 0) return;  // 0: the destructor's stop byte
      int expected = 0;
      impl->received.compare_exchange_strong(expected, b);
      on_signal(b);
    }
  });
}

SignalWatcher::~SignalWatcher() {
  if (impl_->fds[1] < 0) return;
  sigaction(SIGINT, &impl_->old_int, nullptr);
  sigaction(SIGTERM, &impl_->old_term, nullptr);
  g_write_fd = -1;
  const unsigned char stop = 0;
  [[maybe_unused]] ssize_t n = write(impl_->fds[1], &stop, 1);
  if (impl_->watcher.joinable()) impl_->watcher.join();
  close(impl_->fds[0]);
  close(impl_->fds[1]);
}

int SignalWatcher::received() const { return impl_->received.load(); }

}  // namespace ronghe
