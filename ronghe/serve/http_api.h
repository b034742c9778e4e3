// The HTTP API (KServe v2 / Triton REST plus ronghe's extensions), independent of the transport:
// the event-driven plaintext front end (event_http.h) and the TLS one (cpp-httplib, http.cc)
// both hand each parsed request here, so routes, errors and access-log lines are one code.
//   GET  /v2/health/live | /v2/health/ready | /v2
//   GET  /v2/models/{m}[/versions/{v}]            metadata
//   GET  /v2/models/{m}[/versions/{v}]/ready
//   POST /v2/models/{m}[/versions/{v}]/infer
//   POST /v2/models/{m}/feedback                    outcome labels (experiments, cascades)
//   GET|POST /v2/repository/index, POST /v2/repository/models/{m}/load|unload
//   GET  /v2/experiments[/{name}], POST /v2/experiments/{name}/promote|rollback
//   GET  /metrics                                   Prometheus text
// An inference is answered in two halves (Start, then Finish) so that a front end can start every
// request one poll of its sockets brought before it waits on any: they then run as one batch.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "ronghe/serve/server.h"

namespace ronghe::serve {

struct HttpCall {
  std::string_view method;
  std::string_view target;  // the request target: path, maybe with a ?query (ignored)
  std::string_view body;
  bool has_header_length = false;  // Inference-Header-Content-Length was sent
  std::string_view header_length;  // its value
  std::string_view remote;         // peer address, for the access log
};

struct HttpReply {
  int status = 200;
  const char* content_type = "application/json";
  std::string body;
  std::string served_version;          // "model:version" of an inference (x-ronghe-version)
  size_t inference_header_length = 0;  // > 0: a binary response, its JSON header's length
};

class HttpApi {
 public:
  // An inference between Start and Finish; reused from call to call (its buffers keep their
  // capacity). Must stay in place until Finish returns.
  struct Pending {
    PendingInfer infer;
    InferRequestMsg msg;
    std::chrono::steady_clock::time_point start;
    const char* route = "";
    std::string method, path, remote;  // for the access log, only when one is kept
    size_t bytes_in = 0;
  };

  explicit HttpApi(InferenceServer* server) : server_(server) {}

  // true: `reply` is the answer. false: an inference was started in `pending`; Finish answers.
  bool Start(const HttpCall& call, Pending* pending, HttpReply* reply);
  void Finish(Pending* pending, HttpReply* reply);
  // Both halves at once.
  void Handle(const HttpCall& call, HttpReply* reply);

 private:
  bool Route(const HttpCall& call, std::string_view path, Pending* p, HttpReply* r);
  void FinishInfer(Pending* p, HttpReply* r);
  void Log(const Pending& p, const HttpReply& r);

  InferenceServer* server_;
};

// The reason phrase of an HTTP status code ("OK", "Bad Request", ...).
const char* HttpReason(int status);

}  // namespace ronghe::serve
