// Connections over gRPC with mutual TLS. The coordinator runs the server; participants dial out
// (a bank opens no inbound port). The server requires a client certificate chained to the
// consortium CA and names the party by it (tls::AuthenticateParty: CN plus the consortium's SAN
// URI); a client without one fails the TLS handshake, a client with the wrong one is refused before
// any message is read. Keep-alive pings detect a peer that vanished without closing its socket.
//
// One party cannot hold the server: each stream sends from its own bounded queue on its own
// writer thread, so the caller of Send never waits for the network; a stream whose queue fills,
// or whose peer does not take a message within the write deadline, is closed (CloseReason says
// which). A stream that sends nothing within hello_timeout_s is closed; each party may hold at
// most max_streams_per_party streams; the server's threads are capped.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/fed/transport.h"

namespace ronghe::fed {

struct TlsFiles {
  std::string ca_pem;    // the consortium CA
  std::string cert_pem;  // this side's certificate ("" only to test that servers refuse it)
  std::string key_pem;   // its key (secret)
};

// Reads ca.pem, cert.pem and key.pem from a bundle folder (`ronghe fed init`).
Result<TlsFiles> ReadTlsBundle(const std::string& dir);

struct GrpcServerOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 picks a free one (see port())
  TlsFiles tls;
  std::string consortium;         // expected in the client certificate's SAN URI
  std::set<std::string> parties;  // names allowed to connect
  int keepalive_ms = 10000;       // Default: 10 s between pings on an idle stream.
  double write_timeout_s = 60;    // Default: 60 s for the peer to take one message (<= 1 MiB).
  size_t send_queue_bytes = size_t{256} << 20;  // Default: 256 MiB queued per stream.
  double hello_timeout_s = 10;                  // Default: 10 s for a new stream's first message.
  int max_streams_per_party = 4;  // Default: 4 open streams per certificate (reconnects overlap).
};

// Called on a gRPC thread for each authenticated participant; the stream lives while it runs.
using SessionHandler = std::function<void(const std::string& party, Connection& connection)>;

class GrpcServer {
 public:
  static Result<std::unique_ptr<GrpcServer>> Start(const GrpcServerOptions& options,
                                                   SessionHandler handler);
  ~GrpcServer();
  int port() const;
  // Cancels every open stream and stops listening.
  void Shutdown();

  struct Impl;

 private:
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct GrpcDialOptions {
  std::string address;  // host:port of the coordinator
  TlsFiles tls;
  std::string server_name;        // "" = the host of `address`; must be in the server cert
  double connect_timeout_s = 10;  // Default: 10 s.
  int keepalive_ms = 10000;       // Default: 10 s.
};

// Opens the session stream. Unavailable when the coordinator cannot be reached or the handshake
// fails (message says which).
Result<std::unique_ptr<Connection>> GrpcDial(const GrpcDialOptions& options);

}  // namespace ronghe::fed
