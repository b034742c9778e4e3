// HTTP/JSON front end (KServe v2 / Triton REST) over InferenceServer, on Debian's cpp-httplib.
//   GET  /v2/health/live | /v2/health/ready | /v2
//   GET  /v2/models/{m}[/versions/{v}]            metadata
//   GET  /v2/models/{m}[/versions/{v}]/ready
//   POST /v2/models/{m}[/versions/{v}]/infer
//   POST /v2/models/{m}/feedback                    outcome labels (experiments, cascades)
//   POST /v2/repository/index, /v2/repository/models/{m}/load|unload
//   GET  /v2/experiments[/{name}], POST /v2/experiments/{name}/promote|rollback
//   GET  /metrics                                   Prometheus text
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

struct HttpOptions {
  std::string host = "0.0.0.0";       // Default: every interface.
  int port = 8000;                    // Default: 8000 (Triton's). 0 = any free port (tests).
  int threads = 256;                  // Default: 256 connection threads. cpp-httplib holds a thread
                                      // per open connection (until it closes or idles 5 s), so more
                                      // open connections than threads queue for seconds.
  int64_t max_body_bytes = 16 << 20;  // Default: 16 MiB; larger bodies get 413.
  TlsOptions tls;  // Default: plaintext. With a certificate: HTTPS (TLS 1.2+), and
                   // with a client CA, mutual TLS.
};

class HttpFrontend {
 public:
  // Binds and starts serving on a background thread; an address in use is Unavailable.
  static Result<std::unique_ptr<HttpFrontend>> Start(InferenceServer* server,
                                                     const HttpOptions& options);
  ~HttpFrontend();  // Stop()

  int port() const;
  // Stops accepting, lets requests in progress finish, joins.
  void Stop();

  struct Impl;

 private:
  explicit HttpFrontend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::serve
