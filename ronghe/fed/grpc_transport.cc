#include "ronghe/fed/grpc_transport.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/mutex.h"
#include "ronghe/fed/fed.grpc.pb.h"
#include "ronghe/tls/tls.h"
#include "ronghe/tls/x509.h"

namespace ronghe::fed {

Result<TlsFiles> ReadTlsBundle(const std::string& dir) {
  TlsFiles t;
  ASSIGN_OR_RETURN(t.ca_pem, ReadFile(dir + "/ca.pem"));
  ASSIGN_OR_RETURN(t.cert_pem, ReadFile(dir + "/cert.pem"));
  ASSIGN_OR_RETURN(t.key_pem, ReadFile(dir + "/key.pem"));
  return t;
}

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The server's end of one stream. Send only queues; a writer thread of its own writes, so a peer
// that never reads blocks that thread alone, and only until the write deadline.
class ServerConnection : public Connection {
 public:
  ServerConnection(grpc::ServerContext* ctx,
                   grpc::ServerReaderWriter<v1::Envelope, v1::Envelope>* s,
                   const GrpcServerOptions& o)
      : ctx_(ctx), stream_(s), o_(o), opened_(Clock::now()) {}
  // Session() closes a stream it served before this; a refused stream, never served, ends with
  // the status Session() returns (no cancellation).
  ~ServerConnection() override {
    if (writer_.joinable()) {
      Close();
      writer_.join();
    }
  }

  bool Send(const v1::Envelope& m) override {
    const size_t n = m.ByteSizeLong();
    MutexLock lock(&mu_);
    if (closed_) return false;
    if (queued_bytes_ + n > o_.send_queue_bytes) {
      CloseLocked("its send queue is full (" + std::to_string(queued_bytes_ + n) +
                  " bytes unread, limit " + std::to_string(o_.send_queue_bytes) + ")");
      return false;
    }
    queue_.push_back(m);
    queued_bytes_ += n;
    if (!writer_.joinable()) writer_ = std::thread([this] { WriteLoop(); });
    cv_.NotifyAll();
    return true;
  }

  bool Recv(v1::Envelope* m) override {
    if (Closed() || !stream_->Read(m)) return false;
    MutexLock lock(&mu_);
    received_ = true;
    return !closed_;
  }

  void Close() override {
    MutexLock lock(&mu_);
    CloseLocked("");
  }

  std::string CloseReason() const override {
    MutexLock lock(&mu_);
    return reason_;
  }

  // Lets the writer send what is queued (a refusal's notice) before the stream ends, for at most
  // the write deadline (the watchdog closes a stream whose peer does not read).
  void Flush() {
    MutexLock lock(&mu_);
    cv_.Wait(&mu_, [&] {
      mu_.AssertHeld();
      return closed_ || (queue_.empty() && !writing_since_);
    });
  }

  // Called by the server's watchdog: closes the stream if a deadline passed.
  void Check(Clock::time_point now) {
    MutexLock lock(&mu_);
    if (closed_) return;
    if (writing_since_ && now - *writing_since_ > Millis(o_.write_timeout_s)) {
      CloseLocked(fmt("did not read its stream for {} s (write deadline)", o_.write_timeout_s));
    } else if (!received_ && now - opened_ > Millis(o_.hello_timeout_s)) {
      CloseLocked(fmt("sent nothing within {} s of opening the stream", o_.hello_timeout_s));
    }
  }

 private:
  static std::string fmt(const char* pattern, double seconds) {
    std::string s = pattern;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", seconds);
    return s.replace(s.find("{}"), 2, buf);
  }

  bool Closed() const {
    MutexLock lock(&mu_);
    return closed_;
  }

  void CloseLocked(const std::string& why) REQUIRES(mu_) {
    if (closed_) return;
    closed_ = true;
    reason_ = why;
    queue_.clear();
    queued_bytes_ = 0;
    cv_.NotifyAll();
    ctx_->TryCancel();  // a blocked Write or Read returns false
  }

  void WriteLoop() {
    MutexLock lock(&mu_);
    while (true) {
      cv_.Wait(&mu_, [&] {
        mu_.AssertHeld();
        return closed_ || !queue_.empty();
      });
      if (closed_) return;
      v1::Envelope m = std::move(queue_.front());
      queue_.pop_front();
      const size_t n = m.ByteSizeLong();
      writing_since_ = Clock::now();
      lock.Unlock();
      const bool ok = stream_->Write(m);
      lock.Lock();
      writing_since_.reset();
      queued_bytes_ -= std::min(queued_bytes_, n);
      if (!ok) CloseLocked(closed_ ? reason_ : "");
      cv_.NotifyAll();  // Flush()
    }
  }

  grpc::ServerContext* ctx_;
  grpc::ServerReaderWriter<v1::Envelope, v1::Envelope>* stream_;
  const GrpcServerOptions& o_;
  const Clock::time_point opened_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<v1::Envelope> queue_ GUARDED_BY(mu_);
  size_t queued_bytes_ GUARDED_BY(mu_) = 0;
  std::optional<Clock::time_point> writing_since_ GUARDED_BY(mu_);
  bool received_ GUARDED_BY(mu_) = false;
  bool closed_ GUARDED_BY(mu_) = false;
  std::string reason_ GUARDED_BY(mu_);
  std::thread writer_;  // started by the first Send
};

// The open streams, for the watchdog and the per-party limit.
class StreamRegistry {
 public:
  explicit StreamRegistry(int per_party) : per_party_(per_party) {}
  bool Admit(const std::string& party, ServerConnection* c) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    int& n = per_party_count_[party];
    if (n >= per_party_) return false;
    ++n;
    open_.insert(c);
    return true;
  }
  void Leave(const std::string& party, ServerConnection* c) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    --per_party_count_[party];
    open_.erase(c);
  }
  // Runs until Stop(): every 100 ms, closes the streams whose deadlines passed.
  void Watch() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (!cv_.WaitFor(&mu_, std::chrono::milliseconds(100), [&] {
      mu_.AssertHeld();
      return stopped_;
    })) {
      const auto now = Clock::now();
      for (ServerConnection* c : open_) c->Check(now);
    }
  }
  void Stop() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    stopped_ = true;
    cv_.NotifyAll();
  }

 private:
  const int per_party_;
  Mutex mu_;
  CondVar cv_;
  std::map<std::string, int> per_party_count_ GUARDED_BY(mu_);
  std::set<ServerConnection*> open_ GUARDED_BY(mu_);
  bool stopped_ GUARDED_BY(mu_) = false;
};

class Service final : public v1::Federation::Service {
 public:
  Service(GrpcServerOptions o, SessionHandler h, StreamRegistry* r)
      : o_(std::move(o)), handler_(std::move(h)), registry_(r) {}
  grpc::Status Session(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<v1::Envelope, v1::Envelope>* stream) override {
    auto auth = ctx->auth_context();
    auto pem = auth ? auth->FindPropertyValues("x509_pem_cert") : std::vector<grpc::string_ref>{};
    if (pem.empty()) return {grpc::StatusCode::UNAUTHENTICATED, "no client certificate"};
    auto party = tls::AuthenticateParty(o_.tls.ca_pem, std::string(pem[0].data(), pem[0].size()),
                                        o_.consortium);
    if (!party.ok()) return {grpc::StatusCode::PERMISSION_DENIED, party.status().message()};
    if (!o_.parties.count(*party)) {
      return {grpc::StatusCode::PERMISSION_DENIED,
              "'" + *party + "' is not a participant of consortium " + o_.consortium};
    }
    ServerConnection conn(ctx, stream, o_);
    if (!registry_->Admit(*party, &conn)) {
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, "'" + *party + "' already holds " +
                                                        std::to_string(o_.max_streams_per_party) +
                                                        " streams (federation limit per party)"};
    }
    handler_(*party, conn);
    conn.Flush();
    conn.Close();
    registry_->Leave(*party, &conn);
    return grpc::Status::OK;
  }

 private:
  GrpcServerOptions o_;
  SessionHandler handler_;
  StreamRegistry* registry_;
};

class ClientConnection : public Connection {
 public:
  ClientConnection(std::shared_ptr<grpc::Channel> ch)
      : channel_(std::move(ch)), stub_(v1::Federation::NewStub(channel_)) {
    stream_ = stub_->Session(&ctx_);
  }
  ~ClientConnection() override {
    Close();
    v1::Envelope m;
    while (stream_->Read(&m)) {
    }
    stream_->Finish();
  }
  bool Send(const v1::Envelope& m) override {
    MutexLock lock(&write_mu_);  // one writer at a time on a gRPC stream
    if (closed_) return false;
    return stream_->Write(m);
  }
  bool Recv(v1::Envelope* m) override { return stream_->Read(m); }
  void Close() override {
    if (!closed_.exchange(true)) ctx_.TryCancel();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::Envelope, v1::Envelope>> stream_;
  Mutex write_mu_;
  std::atomic<bool> closed_{false};
};

}  // namespace

struct GrpcServer::Impl {
  std::unique_ptr<StreamRegistry> registry;
  std::thread watchdog;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool shut = false;
};

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GrpcServer::~GrpcServer() { Shutdown(); }
int GrpcServer::port() const { return impl_->port; }

void GrpcServer::Shutdown() {
  if (impl_->shut) return;
  impl_->shut = true;
  // Streams in progress are cancelled at once rather than waited for.
  impl_->server->Shutdown(std::chrono::system_clock::now());
  impl_->server->Wait();
  impl_->registry->Stop();
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
}

Result<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& o,
                                                      SessionHandler handler) {
  if (o.tls.cert_pem.empty() || o.tls.key_pem.empty() || o.tls.ca_pem.empty()) {
    return InvalidArgument("coordinator: TLS certificate, key and CA are required");
  }
  if (!(o.write_timeout_s > 0) || !(o.hello_timeout_s > 0) || o.max_streams_per_party < 1 ||
      o.send_queue_bytes == 0) {
    return InvalidArgument(
        "coordinator: write and hello timeouts, send queue and streams per party must be > 0");
  }
  auto impl = std::make_unique<Impl>();
  impl->registry = std::make_unique<StreamRegistry>(o.max_streams_per_party);
  impl->service = std::make_unique<Service>(o, std::move(handler), impl->registry.get());
  grpc::ServerBuilder b;
  b.AddListeningPort(o.listen,
                     tls::GrpcServerCredentials(o.tls.cert_pem, o.tls.key_pem, o.tls.ca_pem),
                     &impl->port);
  b.RegisterService(impl->service.get());
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, o.keepalive_ms);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o.keepalive_ms);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Every admitted stream holds one handler thread; beyond the per-party limits (plus a few for
  // streams being refused) a flood of streams is refused by gRPC instead of growing threads.
  grpc::ResourceQuota quota("ronghe-federation");
  quota.SetMaxThreads(static_cast<int>(o.parties.size()) * o.max_streams_per_party + 16);
  b.SetResourceQuota(quota);
  impl->server = b.BuildAndStart();
  if (!impl->server || impl->port == 0)
    return Unavailable("coordinator: cannot listen on " + o.listen);
  impl->watchdog = std::thread([r = impl->registry.get()] { r->Watch(); });
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

Result<std::unique_ptr<Connection>> GrpcDial(const GrpcDialOptions& o) {
  grpc::ChannelArguments args;
  if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, o.keepalive_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o.keepalive_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnection is the participant's own loop (with its backoff); a fresh channel per attempt.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(
      o.address, tls::GrpcClientCredentials(o.tls.ca_pem, o.tls.cert_pem, o.tls.key_pem), args);
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(o.connect_timeout_s * 1000));
  if (!channel->WaitForConnected(deadline)) {
    return Unavailable("cannot reach the coordinator at " + o.address +
                       " (not listening, or the TLS handshake failed)");
  }
  return std::unique_ptr<Connection>(new ClientConnection(channel));
}

}  // namespace ronghe::fed
