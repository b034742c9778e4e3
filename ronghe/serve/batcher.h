// The dynamic batcher in front of each served model. Requests queue per priority level; a model
// instance takes the oldest highest-priority requests whose rows have the same width, up to
// `max_batch_size` rows, copies them into its own batch buffer and runs them as one batch. When it
// runs them depends on `dispatch`:
//
//   kWorkConserving (default)  an idle instance runs what is queued at once: a lone request never
//                              waits out a queue delay, and requests gather into batches only
//                              while every instance is busy (the batch size follows the load)
//   kDelay                     NVIDIA Triton's contract: a batch runs as soon as it is full or of a
//                              preferred size, or when the oldest request has waited
//                              `max_queue_delay_us`
// A full queue refuses at once (ResourceExhausted: HTTP 429 / RESOURCE_EXHAUSTED); a request still
// queued after its timeout fails with DeadlineExceeded and is never run. Shutdown() stops
// accepting and drains what is queued.
//
// The request path allocates nothing once warm: a request is a caller-owned Ticket that points at
// the caller's input and output buffers and is linked into the queue in place; each instance owns
// its batch buffers (grown to the largest batch seen, never shrunk); raw pixels are normalised
// through the caller's 256-entry table while they are copied into the batch. Only the model's own
// forward pass allocates, once per batch.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"

namespace ronghe::serve {

enum class DispatchPolicy { kWorkConserving, kDelay };
const char* DispatchPolicyName(DispatchPolicy p);  // "work-conserving" | "delay"
Result<DispatchPolicy> ParseDispatchPolicy(const std::string& name);

struct BatcherOptions {
  int64_t max_batch_size = 8;  // Default: 8 rows. 0 turns batching off: each request runs alone.
  int64_t max_queue_delay_us =
      100;  // Default: 100 us, how long the oldest request may wait for company.
  std::vector<int64_t>
      preferred_batch_sizes;       // Default: none. A batch of one of these sizes runs at once.
  int64_t max_queue_size = 1024;   // Default: 1024 queued requests; beyond, refused at once.
  int priority_levels = 1;         // Default: 1. Priorities 0 (highest) .. levels-1.
  int64_t default_timeout_us = 0;  // Default: 0 = none. Queue timeout of requests that set none.
  int instances = 1;               // Default: 1. Model instances, each running one batch at a time.
  DispatchPolicy dispatch = DispatchPolicy::kWorkConserving;  // Default: work-conserving.
};

// A request's rows as the model takes them: `rows` x `row_elements` values, row-major. Requests
// batch together when their `row_elements` agree.
struct InferRequest {
  const float* input = nullptr;     // float rows, copied as they are; or
  const uint8_t* pixels = nullptr;  // byte rows, each byte b written as lut[b] (normalisation)
  const float* lut = nullptr;       // 256 entries, with `pixels`
  int64_t rows = 0;
  int64_t row_elements = 0;
  // Where the answer goes: resized to rows x Ticket::output_row_elements() floats (its capacity
  // is kept, so a caller that reuses it allocates nothing).
  std::vector<float>* output = nullptr;
  int priority = 0;        // 0 = highest
  int64_t timeout_us = 0;  // 0 = the batcher's default
};

class DynamicBatcher;

// One request in flight: owned by the caller, who must keep it (and the buffers its request
// points to) alive until Wait() returns.
class Ticket {
 public:
  Ticket() = default;
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;

  // Blocks until the request has run (or failed); the status says which.
  Status Wait() EXCLUDES(mu_);
  bool Done() const EXCLUDES(mu_);
  // Floats per output row, once Wait() returned OK.
  int64_t output_row_elements() const { return output_row_elements_; }

 private:
  friend class DynamicBatcher;
  using Clock = std::chrono::steady_clock;
  void Finish(Status st) EXCLUDES(mu_);

  InferRequest req_;
  Ticket* prev_ = nullptr;  // queue links, guarded by the batcher's mutex
  Ticket* next_ = nullptr;
  Clock::time_point enqueued_, deadline_;
  Status status_;
  int64_t output_row_elements_ = 0;
  mutable Mutex mu_;
  CondVar cv_;
  bool done_ GUARDED_BY(mu_) = false;
};

struct BatcherStats {
  int64_t requests = 0;  // accepted
  int64_t rejected = 0;  // queue full or invalid
  int64_t timed_out = 0;
  int64_t failed = 0;  // the model returned an error
  int64_t batches = 0;
  // Why each batch ran: full (max_batch_size or a preferred size), an idle instance
  // (work-conserving), the oldest request's delay ran out, or shutdown drained the queue.
  int64_t batches_full = 0, batches_idle = 0, batches_delay = 0, batches_drain = 0;
  std::map<int64_t, int64_t> batch_rows;      // rows per executed batch -> count
  std::vector<int64_t> batches_per_instance;  // batches each model instance ran
  double queue_seconds = 0;                   // summed over requests
  double compute_seconds = 0;                 // summed over batches
};

// What the model sees: the instance's batch buffer and where its output rows go.
struct Batch {
  int instance = 0;  // 0..instances-1
  const float* input = nullptr;
  int64_t rows = 0;
  int64_t row_elements = 0;
  int64_t max_rows = 0;  // the most rows a batch of this batcher holds: size buffers for it once
  // The model writes rows x output_row_elements floats here (resize it; the capacity stays).
  std::vector<float>* output = nullptr;
  int64_t output_row_elements = 0;
};

class DynamicBatcher {
 public:
  // Runs one batch; an error fails each of the batch's requests.
  using RunFn = std::function<Status(Batch& batch)>;

  static Result<std::unique_ptr<DynamicBatcher>> Create(const BatcherOptions& options, RunFn run);
  ~DynamicBatcher();  // Shutdown()

  // Queues the request (or answers `ticket` at once with why not). Never waits for the model.
  // `caller_runs`: the caller promises to Await() the ticket, and wants to run the batch itself
  // if an instance is idle then, so no dispatcher thread is woken now. A front end that starts
  // several requests before waiting on any submits them all this way: the first Await() runs
  // them as one batch on the caller's thread, with no hand-off.
  void Submit(const InferRequest& request, Ticket* ticket, bool caller_runs = false);
  // Waits for a submitted ticket's answer. Work-conserving: while requests are queued and an
  // instance is idle, the calling thread runs the next batch itself (which may hold this
  // ticket, and other callers' too); otherwise it wakes a dispatcher and waits.
  Status Await(Ticket* ticket);
  // Runs the request and waits for its answer. Work-conserving: when nothing is queued and an
  // instance is idle, the calling thread runs the request itself (no hand-off to a dispatcher
  // thread and back); otherwise it queues, as Submit.
  Status Run(const InferRequest& request, Ticket* ticket);
  Status Run(const InferRequest& request) {
    Ticket t;
    return Run(request, &t);
  }
  // Stops accepting (Unavailable), runs everything already queued, joins the instances.
  void Shutdown();
  BatcherStats Stats() const;
  int64_t QueueSize() const;

  struct State;

 private:
  explicit DynamicBatcher(std::unique_ptr<State> s);
  bool Admit(const InferRequest& request, Ticket* ticket);
  void Enqueue(Ticket* ticket, bool wake);
  std::unique_ptr<State> s_;
};

Status ValidateBatcherOptions(const BatcherOptions& options);

}  // namespace ronghe::serve
