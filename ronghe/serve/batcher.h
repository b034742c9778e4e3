// The dynamic batcher in front of each served model. Requests queue per priority level; a model
// instance takes the oldest highest-priority requests whose inputs share a shape, up to
// `max_batch_size` rows, and runs them as one batch. When it runs them depends on `dispatch`:
//
//   kWorkConserving (default)  an idle instance runs what is queued at once: a lone request never
//                              waits out a queue delay, and requests gather into batches only
//                              while every instance is busy (the batch size follows the load)
//   kDelay                     NVIDIA Triton's contract: a batch runs as soon as it is full or of a
//                              preferred size, or when the oldest request has waited
//                              `max_queue_delay_us`
// A full queue refuses at once (ResourceExhausted: HTTP 429 /
// RESOURCE_EXHAUSTED); a request still queued after its timeout fails with DeadlineExceeded and
// is never run. Shutdown() stops accepting and drains what is queued.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

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

struct InferRequest {
  at::Tensor input;  // [rows, ...]; requests batch together when their shapes after rows agree
  int priority = 0;  // 0 = highest
  int64_t timeout_us = 0;  // 0 = the batcher's default
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
  std::map<int64_t, int64_t> batch_rows;  // rows per executed batch -> count
  double queue_seconds = 0;               // summed over requests
  double compute_seconds = 0;             // summed over batches
};

class DynamicBatcher {
 public:
  // Runs one batch on model instance `instance` (0..instances-1): [rows, ...] -> [rows, ...].
  using RunFn = std::function<Result<at::Tensor>(int instance, const at::Tensor& batch)>;

  static Result<std::unique_ptr<DynamicBatcher>> Create(const BatcherOptions& options, RunFn run);
  ~DynamicBatcher();  // Shutdown()

  // The future holds the request's output rows, or why it has none.
  std::future<Result<at::Tensor>> Submit(InferRequest request);
  // Stops accepting (Unavailable), runs everything already queued, joins the instances.
  void Shutdown();
  BatcherStats Stats() const;
  int64_t QueueSize() const;

  struct State;

 private:
  explicit DynamicBatcher(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

Status ValidateBatcherOptions(const BatcherOptions& options);

}  // namespace ronghe::serve
