// The plaintext HTTP/1.1 front end: a few event loops (epoll) instead of a thread per connection.
//
// Why: with cpp-httplib's thread per connection, each request cost two context switches and a
// futex wake-up, and at 32 connections the kernel's scheduling took a third of the CPU of a
// 2-core server (docs/benchmarks.md). Here one loop per core owns its connections; each turn of
// a loop reads every socket that is ready, parses every complete request, starts all of their
// inferences (HttpApi::Start) and only then finishes them (HttpApi::Finish), so the requests one
// turn brought run as one batch, on the loop's own thread when a model instance is idle.
//
// What it speaks: HTTP/1.0 and 1.1, keep-alive and pipelining (answers in request order),
// `Content-Length` bodies, `Expect: 100-continue`. A chunked body gets 411 (send a length), a
// header block over `max_header_bytes` 431, a body over `max_body_bytes` 413 (the body is read
// and dropped, then the connection closes), a malformed request line 400; each error body names
// what was wrong. TLS is served by cpp-httplib instead (http.cc).
//
// Routes that do not infer (metadata, metrics, repository load) run on the loop's thread as they
// arrive; a model load therefore holds that loop's other connections for its duration.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ronghe/base/http_head.h"
#include "ronghe/base/status.h"
#include "ronghe/serve/http_api.h"

namespace ronghe::serve {

struct EventHttpOptions {
  std::string host = "0.0.0.0";         // Default: every interface.
  int port = 8000;                      // Default: 8000. 0 = any free port (tests).
  int loops = 0;                        // Default: 0 = one per core (DefaultThreads()).
  int64_t max_body_bytes = 16 << 20;    // Default: 16 MiB; larger bodies get 413.
  int64_t max_header_bytes = 64 << 10;  // Default: 64 KiB of request line and headers.
  int idle_timeout_s = 60;              // Default: 60 s; an idle or stalled connection closes.
  int max_connections = 10000;          // Default: 10,000 open connections; more are refused.
};

// The request-head parser lives in base (ronghe-edge's server shares it).
using ronghe::HttpHead;
using ronghe::HttpHeadError;
using ronghe::ParseHttpHead;

class EventHttpServer {
 public:
  // Binds and starts the loops; an address in use is Unavailable.
  static Result<std::unique_ptr<EventHttpServer>> Start(HttpApi* api,
                                                        const EventHttpOptions& options);
  ~EventHttpServer();  // Stop()

  int port() const;
  // Stops accepting; each loop finishes the requests it has started, answers them and closes
  // its connections; joins.
  void Stop();

  struct Impl;

 private:
  explicit EventHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::serve
