#include "ronghe/serve/batcher.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

namespace ronghe::serve {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Batch sizes counted in a flat array up to this many rows (no allocation per batch); larger
// ones (batching off, big requests) in a map.
constexpr int64_t kCountedRows = 256;

}  // namespace

Status Ticket::Wait() {
  MutexLock l(&mu_);
  cv_.Wait(&mu_, [this] {
    mu_.AssertHeld();
    return done_;
  });
  return status_;
}

bool Ticket::Done() const {
  MutexLock l(&mu_);
  return done_;
}

void Ticket::Finish(Status st) {
  status_ = std::move(st);
  // Notify under the lock: once it is released the waiter may return and destroy the ticket, so
  // nothing here touches it after.
  MutexLock l(&mu_);
  done_ = true;
  cv_.NotifyAll();
}

struct DynamicBatcher::State {
  BatcherOptions o;
  RunFn run;
  // An intrusive FIFO of tickets per priority level.
  struct Queue {
    Ticket* head = nullptr;
    Ticket* tail = nullptr;
  };
  mutable Mutex mu;
  CondVar cv;
  std::vector<Queue> queues GUARDED_BY(mu);
  int64_t queued GUARDED_BY(mu) = 0;
  bool stopping GUARDED_BY(mu) = false;
  BatcherStats stats GUARDED_BY(mu);  // batch_rows kept in the two below until Stats()
  std::vector<int64_t> rows_counted GUARDED_BY(mu);
  std::map<int64_t, int64_t> rows_large GUARDED_BY(mu);
  std::vector<std::thread> instances;  // started by Create, joined by Shutdown

  static void Unlink(Queue& q, Ticket* t) {
    (t->prev_ ? t->prev_->next_ : q.head) = t->next_;
    (t->next_ ? t->next_->prev_ : q.tail) = t->prev_;
    t->prev_ = t->next_ = nullptr;
  }

  // Fails every queued request whose deadline passed.
  void ExpireLocked(Clock::time_point now) REQUIRES(mu) {
    for (auto& q : queues) {
      for (Ticket* t = q.head; t;) {
        Ticket* next = t->next_;
        if (t->deadline_ <= now) {
          Unlink(q, t);
          ++stats.timed_out;
          --queued;
          t->Finish(DeadlineExceeded(
              "request timed out after " +
              std::to_string(static_cast<int64_t>(Seconds(now - t->enqueued_) * 1e6)) +
              " us in the queue"));
        }
        t = next;
      }
    }
  }

  // The requests the next batch would take, highest priority first, FIFO within a level, all of
  // the first one's row width, within max_batch_size rows. `picked` has room for them (its
  // capacity is max_batch_size).
  void PickLocked(std::vector<Ticket*>* picked, int64_t* rows, Clock::time_point* oldest) const
      REQUIRES(mu) {
    picked->clear();
    *rows = 0;
    *oldest = Clock::time_point::max();
    int64_t width = -1;
    for (const Queue& q : queues) {
      for (Ticket* t = q.head; t; t = t->next_) {
        const InferRequest& r = t->req_;
        if (width >= 0 && r.row_elements != width) continue;
        if (o.max_batch_size == 0) {
          picked->push_back(t);
          *rows = r.rows;
          *oldest = t->enqueued_;
          return;
        }
        if (*rows + r.rows > o.max_batch_size) continue;
        width = r.row_elements;
        picked->push_back(t);
        *rows += r.rows;
        *oldest = std::min(*oldest, t->enqueued_);
        if (*rows == o.max_batch_size) return;
      }
    }
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

  // Copies the picked requests' rows into `buffer` (grown, never shrunk), normalising pixels.
  static const float* Gather(const std::vector<Ticket*>& picked, int64_t rows, int64_t max_rows,
                             int64_t width, std::vector<float>* buffer) {
    if (picked.size() == 1 && picked[0]->req_.input) return picked[0]->req_.input;  // as it is
    const size_t need = static_cast<size_t>(rows * width);
    if (buffer->size() < need) buffer->resize(static_cast<size_t>(max_rows * width));
    float* dst = buffer->data();
    for (const Ticket* t : picked) {
      const InferRequest& r = t->req_;
      const int64_t n = r.rows * width;
      if (r.input) {
        std::memcpy(dst, r.input, static_cast<size_t>(n) * sizeof(float));
      } else {
        for (int64_t i = 0; i < n; ++i) dst[i] = r.lut[r.pixels[i]];
      }
      dst += n;
    }
    return buffer->data();
  }

  void Loop(int instance) EXCLUDES(mu) {
    // This instance's buffers: sized once, reused by every batch.
    std::vector<Ticket*> picked;
    picked.reserve(static_cast<size_t>(std::max<int64_t>(1, o.max_batch_size)));
    std::vector<float> input, output;
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
      PickLocked(&picked, &rows, &oldest);
      const Reason reason = ReadyLocked(rows, oldest, now);
      if (reason == Reason::kNotReady) {
        // Wait for company until the oldest request's delay runs out (or a deadline comes).
        Clock::time_point until = oldest + std::chrono::microseconds(o.max_queue_delay_us);
        for (const Queue& q : queues)
          for (const Ticket* t = q.head; t; t = t->next_) until = std::min(until, t->deadline_);
        cv.WaitUntil(&mu, until);
        continue;
      }
      for (Ticket* t : picked) {
        Unlink(queues[static_cast<size_t>(t->req_.priority)], t);
        stats.queue_seconds += Seconds(now - t->enqueued_);
      }
      queued -= static_cast<int64_t>(picked.size());
      lock.Unlock();
      cv.NotifyAll();  // another instance may take the rest

      const int64_t width = picked[0]->req_.row_elements;
      Batch batch;
      batch.instance = instance;
      batch.rows = rows;
      batch.row_elements = width;
      batch.max_rows = std::max(rows, o.max_batch_size);
      batch.output = &output;
      Clock::time_point start = Clock::now();
      Status st;
      try {
        batch.input = Gather(picked, rows, batch.max_rows, width, &input);
        st = run(batch);
        if (st.ok() && (batch.output_row_elements < 1 ||
                        static_cast<int64_t>(output.size()) < rows * batch.output_row_elements)) {
          st = Internal("the model returned " + std::to_string(output.size()) +
                        " values for a batch of " + std::to_string(rows) + " rows");
        }
      } catch (const std::exception& e) {
        st = Internal(std::string("inference failed: ") + e.what());
      }
      // Each request's rows out of the batch's output, before it is answered.
      if (st.ok()) {
        const int64_t w = batch.output_row_elements;
        const float* src = output.data();
        for (Ticket* t : picked) {
          const InferRequest& r = t->req_;
          r.output->resize(static_cast<size_t>(r.rows * w));
          std::memcpy(r.output->data(), src, static_cast<size_t>(r.rows * w) * sizeof(float));
          src += r.rows * w;
          t->output_row_elements_ = w;
        }
      }
      const double compute = Seconds(Clock::now() - start);
      // Count the batch before answering, so a client holding its answer sees it in the stats.
      lock.Lock();
      ++stats.batches;
      ++(reason == Reason::kFull    ? stats.batches_full
         : reason == Reason::kIdle  ? stats.batches_idle
         : reason == Reason::kDelay ? stats.batches_delay
                                    : stats.batches_drain);
      if (rows < kCountedRows) {
        ++rows_counted[static_cast<size_t>(rows)];
      } else {
        ++rows_large[rows];
      }
      stats.compute_seconds += compute;
      if (!st.ok()) stats.failed += static_cast<int64_t>(picked.size());
      for (Ticket* t : picked) t->Finish(st);
      picked.clear();
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
    s->rows_counted.assign(kCountedRows, 0);
  }
  State* st = s.get();
  for (int i = 0; i < o.instances; ++i) s->instances.emplace_back([st, i] { st->Loop(i); });
  return std::unique_ptr<DynamicBatcher>(new DynamicBatcher(std::move(s)));
}

void DynamicBatcher::Submit(const InferRequest& req, Ticket* t) {
  t->req_ = req;
  t->output_row_elements_ = 0;
  {
    MutexLock l(&t->mu_);
    t->done_ = false;
  }
  auto refuse = [&](Status st) {
    {
      MutexLock lock(&s_->mu);
      ++s_->stats.rejected;
    }
    t->Finish(std::move(st));
  };
  if (req.rows < 1 || req.row_elements < 1) {
    return refuse(InvalidArgument("the input needs at least one row of at least one value"));
  }
  if (!req.input && !(req.pixels && req.lut)) {
    return refuse(InvalidArgument("the request has no input rows"));
  }
  if (!req.output) return refuse(InvalidArgument("the request has nowhere to put its output"));
  if (s_->o.max_batch_size > 0 && req.rows > s_->o.max_batch_size) {
    return refuse(InvalidArgument("the input has " + std::to_string(req.rows) +
                                  " rows, more than max_batch_size " +
                                  std::to_string(s_->o.max_batch_size)));
  }
  if (req.priority < 0 || req.priority >= s_->o.priority_levels) {
    return refuse(InvalidArgument("priority " + std::to_string(req.priority) + " is outside 0.." +
                                  std::to_string(s_->o.priority_levels - 1)));
  }
  t->enqueued_ = Clock::now();
  const int64_t timeout = req.timeout_us > 0 ? req.timeout_us : s_->o.default_timeout_us;
  t->deadline_ =
      timeout > 0 ? t->enqueued_ + std::chrono::microseconds(timeout) : Clock::time_point::max();
  {
    MutexLock lock(&s_->mu);
    if (s_->stopping) {
      ++s_->stats.rejected;
      lock.Unlock();
      return t->Finish(Unavailable("the model is shutting down"));
    }
    if (s_->queued >= s_->o.max_queue_size) {
      ++s_->stats.rejected;
      lock.Unlock();
      return t->Finish(ResourceExhausted("the queue is full (" +
                                         std::to_string(s_->o.max_queue_size) +
                                         " requests); retry later"));
    }
    State::Queue& q = s_->queues[static_cast<size_t>(req.priority)];
    t->prev_ = q.tail;
    t->next_ = nullptr;
    (q.tail ? q.tail->next_ : q.head) = t;
    q.tail = t;
    ++s_->queued;
    ++s_->stats.requests;
  }
  s_->cv.NotifyOne();
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
  BatcherStats out = s_->stats;
  for (int64_t r = 0; r < kCountedRows; ++r) {
    if (s_->rows_counted[static_cast<size_t>(r)]) {
      out.batch_rows[r] = s_->rows_counted[static_cast<size_t>(r)];
    }
  }
  for (const auto& [r, n] : s_->rows_large) out.batch_rows[r] = n;
  return out;
}

int64_t DynamicBatcher::QueueSize() const {
  MutexLock lock(&s_->mu);
  return s_->queued;
}

}  // namespace ronghe::serve
