// The HTTP front end (KServe v2 / Triton REST, routes in http_api.h) over InferenceServer.
// Plaintext HTTP is served by ronghe's event loops (event_http.h); HTTPS by Debian's cpp-httplib
// (a thread per connection), with the same routes.
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
  int loops = 0;                      // Default: 0 = one event loop per core (plaintext HTTP).
  int threads = 256;                  // Default: 256 connection threads, for HTTPS only:
                                      // cpp-httplib holds a thread per open connection (until it
                                      // closes or idles 5 s), so more open connections than threads
                                      // queue for seconds.
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
