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
  std::vector<std::thread> instances;  // dispatchers, started by Create, joined by Shutdown

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
  static const float* Gather(const std::vector<Ticket*>& picked, int64_t max_rows, int64_t width,
                             std::vector<float>* buffer) {
    // Sized for the largest batch on the first batch of this width, even one that does not need
    // it yet, so that no later batch allocates.
    const size_t need = static_cast<size_t>(max_rows * width);
    if (buffer->size() < need) buffer->resize(need);
    if (picked.size() == 1 && picked[0]->req_.input) return picked[0]->req_.input;  // as it is
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

  // One model instance's buffers, sized once and reused by every batch that runs on it.
  struct Slot {
    std::vector<Ticket*> picked;
    std::vector<float> input, output;
  };
  std::vector<Slot> slots;                     // one per model instance
  std::vector<int> free_slots GUARDED_BY(mu);  // instances not running a batch now

  // Runs `slot.picked` (rows in all) on instance `instance` and writes each request's output;
  // no lock held. The status is the batch's.
  Status Execute(int instance, int64_t rows, double* compute) {
    Slot& slot = slots[static_cast<size_t>(instance)];
    const int64_t width = slot.picked[0]->req_.row_elements;
    Batch batch;
    batch.instance = instance;
    batch.rows = rows;
    batch.row_elements = width;
    batch.max_rows = std::max(rows, o.max_batch_size);
    batch.output = &slot.output;
    Clock::time_point start = Clock::now();
    Status st;
    try {
      batch.input = Gather(slot.picked, batch.max_rows, width, &slot.input);
      st = run(batch);
      if (st.ok() && (batch.output_row_elements < 1 || static_cast<int64_t>(slot.output.size()) <
                                                           rows * batch.output_row_elements)) {
        st = Internal("the model returned " + std::to_string(slot.output.size()) +
                      " values for a batch of " + std::to_string(rows) + " rows");
      }
    } catch (const std::exception& e) {
      st = Internal(std::string("inference failed: ") + e.what());
    }
    // Each request's rows out of the batch's output, before it is answered.
    if (st.ok()) {
      const int64_t w = batch.output_row_elements;
      const float* src = slot.output.data();
      for (Ticket* t : slot.picked) {
        const InferRequest& r = t->req_;
        r.output->resize(static_cast<size_t>(r.rows * w));
        std::memcpy(r.output->data(), src, static_cast<size_t>(r.rows * w) * sizeof(float));
        src += r.rows * w;
        t->output_row_elements_ = w;
      }
    }
    *compute = Seconds(Clock::now() - start);
    return st;
  }

  // Counts the batch, answers its requests and frees the instance.
  void FinishLocked(int instance, Reason reason, int64_t rows, double compute, const Status& st)
      REQUIRES(mu) {
    Slot& slot = slots[static_cast<size_t>(instance)];
    ++stats.batches;
    ++stats.batches_per_instance[static_cast<size_t>(instance)];
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
    if (!st.ok()) stats.failed += static_cast<int64_t>(slot.picked.size());
    for (Ticket* t : slot.picked) t->Finish(st);
    slot.picked.clear();
    free_slots.push_back(instance);
  }

  // A dispatcher thread: takes batches off the queue whenever an instance is free. (A caller of
  // Run() may also take a free instance for its own request; see DynamicBatcher::Run.)
  void Loop() EXCLUDES(mu) {
    MutexLock lock(&mu);
    while (true) {
      cv.Wait(&mu, [&] {
        mu.AssertHeld();
        return (stopping && queued == 0) || (queued > 0 && !free_slots.empty());
      });
      Clock::time_point now = Clock::now();
      ExpireLocked(now);
      if (queued == 0) {
        if (stopping) return;
        continue;
      }
      const int instance = free_slots.back();
      Slot& slot = slots[static_cast<size_t>(instance)];
      int64_t rows = 0;
      Clock::time_point oldest;
      PickLocked(&slot.picked, &rows, &oldest);
      const Reason reason = ReadyLocked(rows, oldest, now);
      if (reason == Reason::kNotReady) {
        slot.picked.clear();
        // Wait for company until the oldest request's delay runs out (or a deadline comes).
        Clock::time_point until = oldest + std::chrono::microseconds(o.max_queue_delay_us);
        for (const Queue& q : queues)
          for (const Ticket* t = q.head; t; t = t->next_) until = std::min(until, t->deadline_);
        cv.WaitUntil(&mu, until);
        continue;
      }
      free_slots.pop_back();
      for (Ticket* t : slot.picked) {
        Unlink(queues[static_cast<size_t>(t->req_.priority)], t);
        stats.queue_seconds += Seconds(now - t->enqueued_);
      }
      queued -= static_cast<int64_t>(slot.picked.size());
      lock.Unlock();
      cv.NotifyAll();  // another dispatcher may take the rest on another instance

      double compute = 0;
      Status st = Execute(instance, rows, &compute);
      // Count the batch before answering, so a client holding its answer sees it in the stats.
      lock.Lock();
      FinishLocked(instance, reason, rows, compute, st);
      cv.NotifyAll();  // an instance is free
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
    s->stats.batches_per_instance.assign(static_cast<size_t>(o.instances), 0);
    for (int i = o.instances - 1; i >= 0; --i) s->free_slots.push_back(i);
  }
  s->slots.resize(static_cast<size_t>(o.instances));
  for (auto& slot : s->slots)
    slot.picked.reserve(static_cast<size_t>(std::max<int64_t>(1, o.max_batch_size)));
  State* st = s.get();
  for (int i = 0; i < o.instances; ++i) s->instances.emplace_back([st] { st->Loop(); });
  return std::unique_ptr<DynamicBatcher>(new DynamicBatcher(std::move(s)));
}

// Checks the request and readies the ticket; false (the ticket answered) when it is refused.
bool DynamicBatcher::Admit(const InferRequest& req, Ticket* t) {
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
    return false;
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
  return true;
}

Status DynamicBatcher::Run(const InferRequest& req, Ticket* t) {
  if (!Admit(req, t)) return t->Wait();
  if (s_->o.dispatch == DispatchPolicy::kWorkConserving) {
    // Nothing queued and an instance idle: this thread runs the request itself, without the two
    // hand-offs to a dispatcher and back (each a futex wake and a context switch).
    MutexLock lock(&s_->mu);
    if (!s_->stopping && s_->queued == 0 && !s_->free_slots.empty()) {
      const int instance = s_->free_slots.back();
      s_->free_slots.pop_back();
      ++s_->stats.requests;
      State::Slot& slot = s_->slots[static_cast<size_t>(instance)];
      slot.picked.push_back(t);
      lock.Unlock();
      double compute = 0;
      Status st = s_->Execute(instance, req.rows, &compute);
      lock.Lock();
      s_->FinishLocked(instance, State::Reason::kIdle, req.rows, compute, st);
      const bool waiting = s_->queued > 0;
      lock.Unlock();
      if (waiting) s_->cv.NotifyAll();  // requests queued meanwhile: a dispatcher takes them
      return t->Wait();
    }
  }
  Enqueue(t, /*wake=*/true);
  return t->Wait();
}

void DynamicBatcher::Submit(const InferRequest& req, Ticket* t, bool caller_runs) {
  if (Admit(req, t))
    Enqueue(t, /*wake=*/!caller_runs || s_->o.dispatch != DispatchPolicy::kWorkConserving);
}

Status DynamicBatcher::Await(Ticket* t) {
  MutexLock lock(&s_->mu);
  while (!t->Done()) {
    if (s_->o.dispatch != DispatchPolicy::kWorkConserving || s_->stopping || s_->queued == 0 ||
        s_->free_slots.empty()) {
      // Nothing this thread may run: make sure a dispatcher sees what is queued, then wait.
      const bool queued = s_->queued > 0;
      lock.Unlock();
      if (queued) s_->cv.NotifyOne();
      return t->Wait();
    }
    const Clock::time_point now = Clock::now();
    s_->ExpireLocked(now);
    if (s_->queued == 0) continue;
    const int instance = s_->free_slots.back();
    State::Slot& slot = s_->slots[static_cast<size_t>(instance)];
    int64_t rows = 0;
    Clock::time_point oldest;
    s_->PickLocked(&slot.picked, &rows, &oldest);
    const State::Reason reason = s_->ReadyLocked(rows, oldest, now);
    s_->free_slots.pop_back();
    for (Ticket* p : slot.picked) {
      State::Unlink(s_->queues[static_cast<size_t>(p->req_.priority)], p);
      s_->stats.queue_seconds += Seconds(now - p->enqueued_);
    }
    s_->queued -= static_cast<int64_t>(slot.picked.size());
    lock.Unlock();
    double compute = 0;
    Status st = s_->Execute(instance, rows, &compute);
    lock.Lock();
    s_->FinishLocked(instance, reason, rows, compute, st);
    if (s_->queued > 0) s_->cv.NotifyAll();  // the rest may go to another instance meanwhile
  }
  lock.Unlock();
  return t->Wait();
}

void DynamicBatcher::Enqueue(Ticket* t, bool wake) {
  const InferRequest& req = t->req_;
  t->enqueued_ = Clock::now();
  const int64_t timeout = req.timeout_us > 0 ? req.timeout_us : s_->o.default_timeout_us;
  t->deadline_ =
      timeout > 0 ? t->enqueued_ + std::chrono::microseconds(timeout) : Clock::time_point::max();
  {
    MutexLock lock(&s_->mu);
    if (s_->stopping) {
      ++s_->stats.rejected;
      lock.Unlock();
      t->Finish(Unavailable("the model is shutting down"));
      return;
    }
    if (s_->queued >= s_->o.max_queue_size) {
      ++s_->stats.rejected;
      lock.Unlock();
      t->Finish(ResourceExhausted("the queue is full (" + std::to_string(s_->o.max_queue_size) +
                                  " requests); retry later"));
      return;
    }
    State::Queue& q = s_->queues[static_cast<size_t>(req.priority)];
    t->prev_ = q.tail;
    t->next_ = nullptr;
    (q.tail ? q.tail->next_ : q.head) = t;
    q.tail = t;
    ++s_->queued;
    ++s_->stats.requests;
  }
  if (wake) s_->cv.NotifyOne();
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
