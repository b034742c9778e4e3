#include "ronghe/fed/transport.h"

#include <deque>

#include "ronghe/base/mutex.h"

namespace ronghe::fed {

namespace {

// Both directions of one pipe share this state; each message is serialised on Send and parsed
// on Recv, as a network would.
struct PipeState {
  Mutex mu;
  CondVar cv;
  std::deque<std::string> to_coordinator GUARDED_BY(mu), to_participant GUARDED_BY(mu);
  bool closed GUARDED_BY(mu) = false;
  WireTap tap GUARDED_BY(mu);
};

class PipeEnd : public Connection {
 public:
  PipeEnd(std::shared_ptr<PipeState> s, bool is_participant)
      : s_(std::move(s)), participant_(is_participant) {}
  ~PipeEnd() override { Close(); }

  bool Send(const v1::Envelope& m) override {
    std::string bytes;
    if (!m.SerializeToString(&bytes)) return false;
    MutexLock lock(&s_->mu);
    if (s_->closed) return false;
    if (s_->tap) s_->tap(bytes, participant_);
    (participant_ ? s_->to_coordinator : s_->to_participant).push_back(std::move(bytes));
    s_->cv.NotifyAll();
    return true;
  }

  bool Recv(v1::Envelope* m) override {
    MutexLock lock(&s_->mu);
    auto& q = participant_ ? s_->to_participant : s_->to_coordinator;
    s_->cv.Wait(&s_->mu, [&] {
      s_->mu.AssertHeld();
      return s_->closed || !q.empty();
    });
    // Like TCP: what was sent before the close is still delivered, then the stream ends.
    if (q.empty()) return false;
    std::string bytes = std::move(q.front());
    q.pop_front();
    lock.Unlock();
    return m->ParseFromString(bytes);
  }

  void Close() override {
    MutexLock lock(&s_->mu);
    s_->closed = true;
    s_->cv.NotifyAll();
  }

 private:
  std::shared_ptr<PipeState> s_;
  bool participant_;
};

}  // namespace

std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> MakePipe(WireTap tap) {
  auto s = std::make_shared<PipeState>();
  {
    MutexLock lock(&s->mu);
    s->tap = std::move(tap);
  }
  return {std::make_unique<PipeEnd>(s, true), std::make_unique<PipeEnd>(s, false)};
}

}  // namespace ronghe::fed
