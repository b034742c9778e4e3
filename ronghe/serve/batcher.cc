#include "ronghe/serve/batcher.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include "ronghe/base/mutex.h"

namespace ronghe::serve {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

struct DynamicBatcher::State {
  BatcherOptions o;
  RunFn run;
  struct Pending {
    at::Tensor input;
    std::vector<int64_t> shape;  // after the row dimension
    Clock::time_point enqueued;
    Clock::time_point deadline;  // max() = none
    std::promise<Result<at::Tensor>> promise;
  };
  mutable Mutex mu;
  CondVar cv;
  std::vector<std::deque<Pending>> queues GUARDED_BY(mu);  // one per priority level
  int64_t queued GUARDED_BY(mu) = 0;
  bool stopping GUARDED_BY(mu) = false;
  BatcherStats stats GUARDED_BY(mu);
  std::vector<std::thread> instances;  // started by Create, joined by Shutdown

  // Fails every queued request whose deadline passed.
  void ExpireLocked(Clock::time_point now) REQUIRES(mu) {
    for (auto& q : queues) {
      for (auto it = q.begin(); it != q.end();) {
        if (it->deadline <= now) {
          it->promise.set_value(DeadlineExceeded(
              "request timed out after " +
              std::to_string(static_cast<int64_t>(Seconds(now - it->enqueued) * 1e6)) +
              " us in the queue"));
          ++stats.timed_out;
          --queued;
          it = q.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  // The requests the next batch would take, highest priority first, FIFO within a level, all of
  // the first one's shape, within max_batch_size rows.
  std::vector<std::pair<int, size_t>> PickLocked(int64_t* rows, Clock::time_point* oldest) const
      REQUIRES(mu) {
    std::vector<std::pair<int, size_t>> picked;
    *rows = 0;
    *oldest = Clock::time_point::max();
    const std::vector<int64_t>* shape = nullptr;
    for (int p = 0; p < static_cast<int>(queues.size()); ++p) {
      for (size_t k = 0; k < queues[p].size(); ++k) {
        const Pending& r = queues[p][k];
        if (shape && r.shape != *shape) continue;
        int64_t n = r.input.size(0);
        if (o.max_batch_size == 0) {
          if (picked.empty()) {
            picked.emplace_back(p, k);
            *rows = n;
            *oldest = r.enqueued;
          }
          return picked;
        }
        if (*rows + n > o.max_batch_size) continue;
        if (!shape) shape = &r.shape;
        picked.emplace_back(p, k);
        *rows += n;
        *oldest = std::min(*oldest, r.enqueued);
        if (*rows == o.max_batch_size) return picked;
      }
    }
    return picked;
  }

  enum class Reason { kNotReady, kFull, kIdle, kDelay, kDrain };
  // Whether the picked batch runs now on the calling instance (which is idle: it is asking).
  Reason ReadyLocked(int64_t rows, Clock::time_point oldest, Clock::time_point now) const
      REQUIRES(mu) {
    if (o.max_batch_size == 0 || rows >= o.max_batch_size) return Reason::kFull;
    if (std::find(o.preferred_batch_sizes.begin(), o.preferred_batch_sizes.end(), rows) !=
        o.preferred_batch_sizes.end()) {
      return Reason::kFull;
    }
    if (stopping) return Reason::kDrain;
    if (o.dispatch == DispatchPolicy::kWorkConserving) return Reason::kIdle;
    if (now >= oldest + std::chrono::microseconds(o.max_queue_delay_us)) return Reason::kDelay;
    return Reason::kNotReady;
  }

  void Loop(int instance) EXCLUDES(mu) {
    MutexLock lock(&mu);
    while (true) {
      cv.Wait(&mu, [&] {
        mu.AssertHeld();
        return stopping || queued > 0;
      });
      Clock::time_point now = Clock::now();
      ExpireLocked(now);
      if (queued == 0) {
        if (stopping) return;
        continue;
      }
      int64_t rows = 0;
      Clock::time_point oldest;
      auto picked = PickLocked(&rows, &oldest);
      const Reason reason = ReadyLocked(rows, oldest, now);
      if (reason == Reason::kNotReady) {
        // Wait for company until the oldest request's delay runs out (or a deadline comes).
        Clock::time_point until = oldest + std::chrono::microseconds(o.max_queue_delay_us);
        for (const auto& q : queues)
          for (const auto& r : q) until = std::min(until, r.deadline);
        cv.WaitUntil(&mu, until);
        continue;
      }
      // Take the picked requests out, back to front so indices stay valid.
      std::sort(picked.begin(), picked.end());
      std::vector<Pending> batch;
      for (auto it = picked.rbegin(); it != picked.rend(); ++it) {
        auto& q = queues[it->first];
        batch.push_back(std::move(q[it->second]));
        q.erase(q.begin() + static_cast<std::ptrdiff_t>(it->second));
      }
      std::reverse(batch.begin(), batch.end());
      queued -= static_cast<int64_t>(batch.size());
      for (const auto& r : batch) stats.queue_seconds += Seconds(now - r.enqueued);
      lock.Unlock();
      cv.NotifyAll();  // room in the queue; another instance may take the rest

      std::vector<at::Tensor> inputs;
      for (const auto& r : batch) inputs.push_back(r.input);
      Clock::time_point start = Clock::now();
      Result<at::Tensor> out = InvalidArgument("no output");
      try {
        at::Tensor x = inputs.size() == 1 ? inputs[0] : torch::cat(inputs);
        out = run(instance, x);
        if (out.ok() && (!out->defined() || out->dim() == 0 || out->size(0) != rows)) {
          out = Internal("the model returned " +
                         std::to_string(out->defined() && out->dim() ? out->size(0) : 0) +
                         " rows for a batch of " + std::to_string(rows));
        }
      } catch (const std::exception& e) {
        out = Internal(std::string("inference failed: ") + e.what());
      }
      double compute = Seconds(Clock::now() - start);
      // Count the batch before answering, so a client holding its answer sees it in the stats.
      lock.Lock();
      ++stats.batches;
      ++(reason == Reason::kFull    ? stats.batches_full
         : reason == Reason::kIdle  ? stats.batches_idle
         : reason == Reason::kDelay ? stats.batches_delay
                                    : stats.batches_drain);
      ++stats.batch_rows[rows];
      stats.compute_seconds += compute;
      if (!out.ok()) stats.failed += static_cast<int64_t>(batch.size());
      int64_t off = 0;
      for (auto& r : batch) {
        int64_t n = r.input.size(0);
        if (out.ok()) {
          r.promise.set_value(out->narrow(0, off, n));
        } else {
          r.promise.set_value(out.status());
        }
        off += n;
      }
    }
  }
};

const char* DispatchPolicyName(DispatchPolicy p) {
  return p == DispatchPolicy::kDelay ? "delay" : "work-conserving";
}

Result<DispatchPolicy> ParseDispatchPolicy(const std::string& name) {
  if (name == "work-conserving") return DispatchPolicy::kWorkConserving;
  if (name == "delay") return DispatchPolicy::kDelay;
  return InvalidArgument("dispatch must be \"work-conserving\" or \"delay\", not '" +
                         name.substr(0, 64) + "'");
}

Status ValidateBatcherOptions(const BatcherOptions& o) {
  if (o.max_batch_size < 0) return InvalidArgument("max_batch_size must be >= 0");
  if (o.max_queue_delay_us < 0) return InvalidArgument("max_queue_delay_us must be >= 0");
  if (o.max_queue_size < 1) return InvalidArgument("max_queue_size must be >= 1");
  if (o.priority_levels < 1) return InvalidArgument("priority_levels must be >= 1");
  if (o.default_timeout_us < 0) return InvalidArgument("default_timeout_us must be >= 0");
  if (o.instances < 1) return InvalidArgument("instances must be >= 1");
  for (int64_t p : o.preferred_batch_sizes) {
    if (p < 1 || (o.max_batch_size > 0 && p > o.max_batch_size)) {
      return InvalidArgument("preferred batch size " + std::to_string(p) +
                             " is outside 1..max_batch_size");
    }
  }
  return Status::OK();
}

DynamicBatcher::DynamicBatcher(std::unique_ptr<State> s) : s_(std::move(s)) {}

DynamicBatcher::~DynamicBatcher() { Shutdown(); }

Result<std::unique_ptr<DynamicBatcher>> DynamicBatcher::Create(const BatcherOptions& o, RunFn run) {
  RETURN_IF_ERROR(ValidateBatcherOptions(o));
  if (!run) return InvalidArgument("batcher: no model to run");
  auto s = std::make_unique<State>();
  s->o = o;
  s->run = std::move(run);
  {
    MutexLock lock(&s->mu);
    s->queues.resize(static_cast<size_t>(o.priority_levels));
  }
  State* st = s.get();
  for (int i = 0; i < o.instances; ++i) s->instances.emplace_back([st, i] { st->Loop(i); });
  return std::unique_ptr<DynamicBatcher>(new DynamicBatcher(std::move(s)));
}

std::future<Result<at::Tensor>> DynamicBatcher::Submit(InferRequest req) {
  State::Pending p;
  auto fut = p.promise.get_future();
  auto refuse = [&](Status st) {
    MutexLock lock(&s_->mu);
    ++s_->stats.rejected;
    p.promise.set_value(std::move(st));
    return std::move(fut);
  };
  if (!req.input.defined() || req.input.dim() < 1 || req.input.size(0) < 1) {
    return refuse(InvalidArgument("the input needs at least one row"));
  }
  if (s_->o.max_batch_size > 0 && req.input.size(0) > s_->o.max_batch_size) {
    return refuse(InvalidArgument("the input has " + std::to_string(req.input.size(0)) +
                                  " rows, more than max_batch_size " +
                                  std::to_string(s_->o.max_batch_size)));
  }
  if (req.priority < 0 || req.priority >= s_->o.priority_levels) {
    return refuse(InvalidArgument("priority " + std::to_string(req.priority) + " is outside 0.." +
                                  std::to_string(s_->o.priority_levels - 1)));
  }
  p.input = req.input;
  p.shape.assign(req.input.sizes().begin() + 1, req.input.sizes().end());
  p.enqueued = Clock::now();
  int64_t timeout = req.timeout_us > 0 ? req.timeout_us : s_->o.default_timeout_us;
  p.deadline =
      timeout > 0 ? p.enqueued + std::chrono::microseconds(timeout) : Clock::time_point::max();
  {
    MutexLock lock(&s_->mu);
    if (s_->stopping) {
      ++s_->stats.rejected;
      p.promise.set_value(Unavailable("the model is shutting down"));
      return fut;
    }
    if (s_->queued >= s_->o.max_queue_size) {
      ++s_->stats.rejected;
      p.promise.set_value(ResourceExhausted("the queue is full (" +
                                            std::to_string(s_->o.max_queue_size) +
                                            " requests); retry later"));
      return fut;
    }
    s_->queues[static_cast<size_t>(req.priority)].push_back(std::move(p));
    ++s_->queued;
    ++s_->stats.requests;
  }
  s_->cv.NotifyOne();
  return fut;
}

void DynamicBatcher::Shutdown() {
  {
    MutexLock lock(&s_->mu);
    if (s_->stopping && s_->instances.empty()) return;
    s_->stopping = true;
  }
  s_->cv.NotifyAll();
  for (auto& t : s_->instances) t.join();
  s_->instances.clear();
}

BatcherStats DynamicBatcher::Stats() const {
  MutexLock lock(&s_->mu);
  return s_->stats;
}

int64_t DynamicBatcher::QueueSize() const {
  MutexLock lock(&s_->mu);
  return s_->queued;
}

}  // namespace ronghe::serve
