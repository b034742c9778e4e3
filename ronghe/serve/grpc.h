// gRPC front end (KServe v2 GRPCInferenceService, inference.proto) over InferenceServer, on
// Debian's gRPC. Same semantics as HTTP; errors map to gRPC codes (INVALID_ARGUMENT, NOT_FOUND,
// RESOURCE_EXHAUSTED when a queue is full, UNAVAILABLE, DEADLINE_EXCEEDED, ...).
#pragma once

#include <memory>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/serve/server.h"
#include "ronghe/tls/tls.h"

namespace ronghe::serve {

using tls::LoadTls;
using tls::TlsMaterial;
using tls::TlsOptions;

struct GrpcOptions {
  std::string host = "0.0.0.0";          // Default: every interface.
  int port = 8001;                       // Default: 8001 (Triton's). 0 = any free port.
  int64_t max_message_bytes = 16 << 20;  // Default: 16 MiB; larger: RESOURCE_EXHAUSTED.
  TlsOptions tls;                        // Default: plaintext. With a certificate: TLS, and with a
                                         // client CA, mutual TLS.
};

class GrpcFrontend {
 public:
  static Result<std::unique_ptr<GrpcFrontend>> Start(InferenceServer* server,
                                                     const GrpcOptions& options);
  ~GrpcFrontend();  // Stop()
  int port() const;
  // Stops accepting; calls in progress finish (bounded by 30 s).
  void Stop();

  struct Impl;

 private:
  explicit GrpcFrontend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::serve
