// ronghe-edge's local server: the same answers over a TCP port and a Unix socket, from the model
// the node runs now (swapped atomically, so a request sees one version from start to end).
//   GET  /healthz      200 "ok"
//   GET  /v1/model     the running model: name, version, kind, precision, inputs, outputs
//   POST /v1/predict   {"inputs": [v, ...] | [[v, ...], ...]} (steps x features raw values)
//                      -> {"outputs": [...], "model_version": "...", "latency_us": n}
//   GET  /metrics      Prometheus text: requests, errors, latency quantiles
// A thread per connection (a node has few clients), HTTP/1.1 keep-alive, Content-Length bodies;
// heads parsed by base's strict parser.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"
#include "ronghe/edge/runtime.h"

namespace ronghe::edge {

// What the node serves, shared by the server and the update agent.
class Node {
 public:
  struct Running {
    std::shared_ptr<const Model> model;
    std::string version;
  };
  void Set(std::shared_ptr<const Model> model, std::string version);
  Running Current() const;

  // One answered request's latency (microseconds) into a ring of the last 4096.
  void Record(double micros, bool ok);
  // p50 / p99 of the ring, in microseconds; counts since start.
  void Latency(double* p50, double* p99) const;
  int64_t requests() const { return requests_.load(); }
  int64_t errors() const { return errors_.load(); }

 private:
  mutable Mutex mu_;
  Running running_ GUARDED_BY(mu_);
  std::vector<double> ring_ GUARDED_BY(mu_);
  size_t next_ GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> requests_{0}, errors_{0};
};

struct ServerOptions {
  std::string host = "127.0.0.1";    // Default: loopback only (a substation's local clients).
  int port = -1;                     // Default: -1 = no TCP listener. 0 = any free port (tests).
  std::string socket_path;           // Default: "" = no Unix socket. Else created 0660.
  int max_connections = 64;          // Default: 64 at once; more are answered 503 and closed.
  int64_t max_body_bytes = 1 << 20;  // Default: 1 MiB.
  int idle_timeout_s = 30;           // Default: 30 s without a byte closes a connection.
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options, Node* node);
  ~Server();         // stops
  int port() const;  // the TCP port, or -1
  void Stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The body of a POST /v1/predict answer for `inputs` (JSON text), or a client error: exposed for
// tests and the in-process callers.
Result<std::string> PredictJson(const Node& node, const std::string& body);

}  // namespace ronghe::edge
