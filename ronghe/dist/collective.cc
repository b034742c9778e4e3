#include "ronghe/dist/collective.h"

#include <torch/torch.h>

#include <atomic>
#include <cstring>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

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
      return Unavailable(
          what + " failed on rank " + std::to_string(o.rank) + " (a peer died or timed out after " +
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
int64_t Collective::bucket_bytes() const { return impl_->o.bucket_bytes; }

Result<std::unique_ptr<Collective>> Collective::Connect(const CollectiveOptions& o) {
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world) {
    return InvalidArgument("distributed: rank " + std::to_string(o.rank) +
                           " is outside world size " + std::to_string(o.world));
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
    return Unavailable(
        "distributed rendezvous at " + o.host + ":" + std::to_string(o.port) + " failed for rank " +
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
    while (j < tensors.size() &&
           (j == i || bytes + tensors[j].numel() * 4 <= impl_->o.bucket_bytes)) {
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

Status Collective::AllReduceSum(const std::vector<at::Tensor>& tensors) {
  if (impl_->o.world == 1) return Status::OK();
  for (const auto& t : tensors) {
    std::vector<at::Tensor> v = {t};
    RETURN_IF_ERROR(impl_->Wait(impl_->pg->allreduce(v), "all-reduce"));
  }
  return Status::OK();
}

Result<std::string> Collective::BroadcastBytes(const std::string& bytes, int root) {
  if (impl_->o.world == 1) return bytes;
  at::Tensor len = torch::tensor({static_cast<int64_t>(impl_->o.rank == root ? bytes.size() : 0)},
                                 torch::kInt64);
  RETURN_IF_ERROR(Broadcast({len}, root));
  int64_t n = len.item<int64_t>();
  if (n == 0) return std::string();
  at::Tensor buf = torch::empty({n}, torch::kUInt8);
  if (impl_->o.rank == root) std::memcpy(buf.data_ptr(), bytes.data(), bytes.size());
  RETURN_IF_ERROR(Broadcast({buf}, root));
  return std::string(static_cast<const char*>(buf.data_ptr()), static_cast<size_t>(n));
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

struct GradientReducer::State {
  Collective* c = nullptr;
  std::vector<at::Tensor> params;
  struct Bucket {
    std::vector<size_t> members;   // indices into params
    std::vector<int64_t> offsets;  // of each member in flat
    at::Tensor flat;
    int pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  std::vector<int> bucket_of;   // per param
  std::vector<size_t> slot_of;  // per param: its index among its bucket's members
  std::vector<char> ready;      // per param, this step
  std::vector<unsigned> hooks;  // per param
  Status error;                 // a launch that threw inside a hook

  void Launch(Bucket& b) {
    if (b.work || !error.ok()) return;
    std::vector<at::Tensor> v = {b.flat};
    try {
      b.work = c->impl()->pg->allreduce(v);
    } catch (const std::exception& e) {
      error = Unavailable("gradient all-reduce failed on rank " + std::to_string(c->rank()) + ": " +
                          Collective::Impl::FirstLine(e.what()));
    }
  }

  void OnGrad(size_t i, const at::Tensor& grad) {
    Bucket& b = buckets[bucket_of[i]];
    const size_t k = slot_of[i];
    b.flat.narrow(0, b.offsets[k], grad.numel()).copy_(grad.reshape({-1}));
    if (!ready[i]) {
      ready[i] = 1;
      if (--b.pending == 0) Launch(b);
    }
  }
};

GradientReducer::GradientReducer(Collective* c, std::vector<at::Tensor> params,
                                 int64_t bucket_bytes)
    : s_(std::make_unique<State>()) {
  s_->c = c;
  s_->params = std::move(params);
  const size_t n = s_->params.size();
  s_->bucket_of.assign(n, 0);
  s_->slot_of.assign(n, 0);
  s_->ready.assign(n, 0);
  // Reverse order: the last layers' gradients come first out of backward.
  State::Bucket cur;
  int64_t bytes = 0;
  auto close = [&]() {
    if (cur.members.empty()) return;
    int64_t total = 0;
    for (size_t i : cur.members) {
      cur.offsets.push_back(total);
      total += s_->params[i].numel();
    }
    cur.flat = torch::zeros({total}, torch::kFloat32);
    for (size_t k = 0; k < cur.members.size(); ++k) {
      s_->bucket_of[cur.members[k]] = static_cast<int>(s_->buckets.size());
      s_->slot_of[cur.members[k]] = k;
    }
    s_->buckets.push_back(std::move(cur));
    cur = State::Bucket();
    bytes = 0;
  };
  for (size_t k = n; k-- > 0;) {
    int64_t b = s_->params[k].numel() * 4;
    if (!cur.members.empty() && bytes + b > bucket_bytes) close();
    cur.members.push_back(k);
    bytes += b;
  }
  close();
  if (c->world() > 1) {
    State* st = s_.get();
    for (size_t i = 0; i < n; ++i) {
      s_->hooks.push_back(
          s_->params[i].register_hook([st, i](const at::Tensor& grad) { st->OnGrad(i, grad); }));
    }
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < s_->hooks.size(); ++i) s_->params[i].remove_hook(s_->hooks[i]);
}

int GradientReducer::num_buckets() const { return static_cast<int>(s_->buckets.size()); }

void GradientReducer::Prepare() {
  std::fill(s_->ready.begin(), s_->ready.end(), 0);
  for (auto& b : s_->buckets) {
    b.pending = static_cast<int>(b.members.size());
    b.work.reset();
  }
  s_->error = Status::OK();
}

Status GradientReducer::Finish() {
  torch::NoGradGuard no_grad;
  const int world = s_->c->world();
  for (auto& b : s_->buckets) {
    if (world > 1 && !b.work) {
      for (size_t k = 0; k < b.members.size(); ++k) {
        if (!s_->ready[b.members[k]])
          b.flat.narrow(0, b.offsets[k], s_->params[b.members[k]].numel()).zero_();
      }
      s_->Launch(b);
    }
  }
  RETURN_IF_ERROR(s_->error);
  for (auto& b : s_->buckets) {
    if (world > 1) {
      RETURN_IF_ERROR(s_->c->impl()->Wait(b.work, "gradient all-reduce"));
      b.flat.div_(world);
    }
    for (size_t k = 0; k < b.members.size(); ++k) {
      at::Tensor& p = s_->params[b.members[k]];
      if (world == 1) continue;  // backward already left the gradient in .grad
      at::Tensor g = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(g);
      } else {
        p.mutable_grad() = g.clone();
      }
    }
  }
  return Status::OK();
}

}  // namespace ronghe::dist
