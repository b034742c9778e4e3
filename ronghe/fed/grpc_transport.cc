#include "ronghe/fed/grpc_transport.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <chrono>

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

class ServerConnection : public Connection {
 public:
  ServerConnection(grpc::ServerContext* ctx,
                   grpc::ServerReaderWriter<v1::Envelope, v1::Envelope>* s)
      : ctx_(ctx), stream_(s) {}
  bool Send(const v1::Envelope& m) override {
    MutexLock lock(&write_mu_);  // one writer at a time on a gRPC stream
    if (closed_) return false;
    return stream_->Write(m);
  }
  bool Recv(v1::Envelope* m) override { return !closed_ && stream_->Read(m); }
  void Close() override {
    if (!closed_.exchange(true)) ctx_->TryCancel();
  }

 private:
  grpc::ServerContext* ctx_;
  grpc::ServerReaderWriter<v1::Envelope, v1::Envelope>* stream_;
  Mutex write_mu_;
  std::atomic<bool> closed_{false};
};

class Service final : public v1::Federation::Service {
 public:
  Service(GrpcServerOptions o, SessionHandler h) : o_(std::move(o)), handler_(std::move(h)) {}
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
    ServerConnection conn(ctx, stream);
    handler_(*party, conn);
    conn.Close();
    return grpc::Status::OK;
  }

 private:
  GrpcServerOptions o_;
  SessionHandler handler_;
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
}

Result<std::unique_ptr<GrpcServer>> GrpcServer::Start(const GrpcServerOptions& o,
                                                      SessionHandler handler) {
  if (o.tls.cert_pem.empty() || o.tls.key_pem.empty() || o.tls.ca_pem.empty()) {
    return InvalidArgument("coordinator: TLS certificate, key and CA are required");
  }
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<Service>(o, std::move(handler));
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
  impl->server = b.BuildAndStart();
  if (!impl->server || impl->port == 0)
    return Unavailable("coordinator: cannot listen on " + o.listen);
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
