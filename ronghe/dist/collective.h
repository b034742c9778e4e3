// Collectives between the processes of one training job, on torch's own c10d: a TCPStore for
// the rendezvous (rank 0 hosts it) and ProcessGroupGloo for the collectives (ProcessGroupNCCL
// would slot in beside it on a CUDA build; Debian's LibTorch 1.13.1 has none). Gradients are
// all-reduced in flat buckets of `bucket_bytes` (fewer, larger messages, as DDP does).
//
// Failure: every wait is bounded by `timeout_s`; a rank that never arrives or dies mid-collective
// makes the others return Unavailable naming the operation, never hang.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "ronghe/base/status.h"

namespace ronghe::dist {

struct CollectiveOptions {
  std::string host = "127.0.0.1";  // Default: loopback. Rank 0's address (it hosts the store).
  int port = 29500;                // Default: 29500 (torchrun's).
  int rank = 0;                    // required: 0..world-1
  int world = 1;                   // required: number of processes
  double timeout_s = 60;           // Default: 60 s for the rendezvous and each collective.
  int64_t bucket_bytes = 25 << 20; // Default: 25 MiB, DDP's default bucket.
};

class Collective {
 public:
  static Result<std::unique_ptr<Collective>> Connect(const CollectiveOptions& options);
  ~Collective();

  // Every tensor becomes the mean over ranks (float32, CPU, contiguous), bucket by bucket.
  Status AllReduceMean(const std::vector<at::Tensor>& tensors);
  // Every tensor takes rank `root`'s value.
  Status Broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  Status Barrier();

  int rank() const;
  int world() const;

  struct Impl;

 private:
  explicit Collective(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::dist
