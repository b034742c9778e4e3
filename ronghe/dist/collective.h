// Collectives between the processes of one training job, on torch's own c10d: a TCPStore for
// the rendezvous (rank 0 hosts it) and ProcessGroupGloo for the collectives (ProcessGroupNCCL
// would slot in beside it on a CUDA build; Debian's LibTorch 1.13.1 has none). Gradients are
// all-reduced in flat buckets of `bucket_bytes` (fewer, larger messages, as DDP does).
//
// Failure: every wait is bounded by `timeout_s`; a rank that never arrives or dies mid-collective
// makes the others return Unavailable naming the operation, never hang.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::dist {

struct CollectiveOptions {
  std::string host = "127.0.0.1";   // Default: loopback. Rank 0's address (it hosts the store).
  int port = 29500;                 // Default: 29500 (torchrun's).
  int rank = 0;                     // required: 0..world-1
  int world = 1;                    // required: number of processes
  double timeout_s = 60;            // Default: 60 s for the rendezvous and each collective.
  int64_t bucket_bytes = 25 << 20;  // Default: 25 MiB, DDP's default bucket.
};

class Collective {
 public:
  static Result<std::unique_ptr<Collective>> Connect(const CollectiveOptions& options);
  ~Collective();

  // Every tensor becomes the mean over ranks (float32, CPU, contiguous), bucket by bucket.
  Status AllReduceMean(const std::vector<at::Tensor>& tensors);
  // Every tensor becomes the sum over ranks (any dtype Gloo sums: float, double, int64), one
  // collective per tensor, in place.
  Status AllReduceSum(const std::vector<at::Tensor>& tensors);
  // Rank `root`'s bytes, on every rank (`bytes` is read on root only).
  Result<std::string> BroadcastBytes(const std::string& bytes, int root = 0);
  // Every tensor takes rank `root`'s value.
  Status Broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  Status Barrier();

  int rank() const;
  int world() const;
  int64_t bucket_bytes() const;

  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  explicit Collective(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Data-parallel gradient averaging with the backward pass overlapped, as DDP's reducer does: the
// parameters are cut into buckets of about `bucket_bytes` in reverse order (the order backward
// produces their gradients), a hook on each parameter copies its gradient into the bucket's flat
// buffer, and a full bucket's all-reduce starts at once on Gloo's threads while backward goes on.
// Finish() starts what is left (a parameter without a gradient, or a rank with no examples in
// this step, contributes zeros), waits for all, and sets every parameter's .grad to the mean.
class GradientReducer {
 public:
  GradientReducer(Collective* collective, std::vector<at::Tensor> params, int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each backward.
  void Prepare();
  // After backward (or instead of it, on a rank with nothing to compute this step).
  Status Finish();
  int num_buckets() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace ronghe::dist
