#include "ronghe/dist/collective.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

namespace ronghe::dist {

struct Collective::Impl {
  CollectiveOptions o;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;

  Status Wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      if (!work->wait(std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)))) {
        return Unavailable(what + ": rank " + std::to_string(o.rank) + " timed out");
      }
    } catch (const std::exception& e) {
      return Unavailable(what + " failed on rank " + std::to_string(o.rank) + " (a peer died or timed out after " +
                         std::to_string(static_cast<int>(o.timeout_s)) + " s): " + FirstLine(e.what()));
    }
    return Status::OK();
  }
  static std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }
};

Collective::Collective(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Collective::~Collective() = default;
int Collective::rank() const { return impl_->o.rank; }
int Collective::world() const { return impl_->o.world; }

Result<std::unique_ptr<Collective>> Collective::Connect(const CollectiveOptions& o) {
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world) {
    return InvalidArgument("distributed: rank " + std::to_string(o.rank) + " is outside world size " + std::to_string(o.world));
  }
  if (o.port < 1 || o.port > 65535) return InvalidArgument("distributed: port must be 1..65535");
  auto impl = std::make_unique<Impl>();
  impl->o = o;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.port);
    so.isServer = o.rank == 0;
    so.numWorkers = o.world;
    so.waitWorkers = true;
    so.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(o.host, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.host));
    opts->threads = 2;
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, o.rank, o.world, opts);
  } catch (const std::exception& e) {
    return Unavailable("distributed rendezvous at " + o.host + ":" + std::to_string(o.port) + " failed for rank " +
                       std::to_string(o.rank) + " of " + std::to_string(o.world) + " within " +
                       std::to_string(static_cast<int>(o.timeout_s)) + " s: " + Impl::FirstLine(e.what()));
  }
  return std::unique_ptr<Collective>(new Collective(std::move(impl)));
}

Status Collective::AllReduceMean(const std::vector<at::Tensor>& tensors) {
  if (impl_->o.world == 1) return Status::OK();
  torch::NoGradGuard no_grad;
  size_t i = 0;
  while (i < tensors.size()) {
    // One bucket: consecutive tensors up to bucket_bytes, flattened into one buffer.
    size_t j = i;
    int64_t bytes = 0;
    std::vector<at::Tensor> flat;
    while (j < tensors.size() && (j == i || bytes + tensors[j].numel() * 4 <= impl_->o.bucket_bytes)) {
      bytes += tensors[j].numel() * 4;
      flat.push_back(tensors[j].reshape({-1}));
      ++j;
    }
    std::vector<at::Tensor> buf = {torch::cat(flat)};
    RETURN_IF_ERROR(impl_->Wait(impl_->pg->allreduce(buf), "all-reduce"));
    buf[0].div_(impl_->o.world);
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      int64_t n = tensors[k].numel();
      tensors[k].copy_(buf[0].narrow(0, off, n).view_as(tensors[k]));
      off += n;
    }
    i = j;
  }
  return Status::OK();
}

Status Collective::Broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (impl_->o.world == 1) return Status::OK();
  for (const auto& t : tensors) {
    std::vector<at::Tensor> v = {t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    RETURN_IF_ERROR(impl_->Wait(impl_->pg->broadcast(v, bo), "broadcast"));
  }
  return Status::OK();
}

Status Collective::Barrier() {
  if (impl_->o.world == 1) return Status::OK();
  return impl_->Wait(impl_->pg->barrier(), "barrier");
}

}  // namespace ronghe::dist
