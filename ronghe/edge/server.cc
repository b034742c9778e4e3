#include "ronghe/edge/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "ronghe/base/http_head.h"

namespace ronghe::edge {

void Node::Set(std::shared_ptr<const Model> model, std::string version) {
  MutexLock l(&mu_);
  running_ = {std::move(model), std::move(version)};
}

Node::Running Node::Current() const {
  MutexLock l(&mu_);
  return running_;
}

void Node::Record(double micros, bool ok) {
  ++requests_;
  if (!ok) ++errors_;
  MutexLock l(&mu_);
  if (ring_.size() < 4096) {
    ring_.push_back(micros);
  } else {
    ring_[next_] = micros;
    next_ = (next_ + 1) % ring_.size();
  }
}

void Node::Latency(double* p50, double* p99) const {
  std::vector<double> v;
  {
    MutexLock l(&mu_);
    v = ring_;
  }
  *p50 = *p99 = 0;
  if (v.empty()) return;
  std::sort(v.begin(), v.end());
  *p50 = v[v.size() / 2];
  *p99 = v[std::min(v.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(v.size())))];
}

Result<std::string> PredictJson(const Node& node, const std::string& body) {
  Node::Running r = node.Current();
  if (!r.model) return Unavailable("no model is loaded yet");
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("inputs") || !j["inputs"].is_array())
    return InvalidArgument("the body must be a JSON object with an \"inputs\" array");
  std::vector<float> x;
  x.reserve(static_cast<size_t>(r.model->input_size()));
  for (const auto& row : j["inputs"]) {
    if (row.is_array()) {
      if (static_cast<int64_t>(row.size()) != r.model->features())
        return InvalidArgument("each step of \"inputs\" needs " +
                               std::to_string(r.model->features()) + " values (" +
                               r.model->header()
                                   .value("input", nlohmann::json::object())
                                   .value("names", nlohmann::json::array())
                                   .dump() +
                               ")");
      for (const auto& v : row) {
        if (!v.is_number()) return InvalidArgument("\"inputs\" holds a value that is not a number");
        x.push_back(v.get<float>());
      }
    } else if (row.is_number()) {
      x.push_back(row.get<float>());
    } else {
      return InvalidArgument("\"inputs\" holds a value that is not a number");
    }
  }
  std::vector<float> out(static_cast<size_t>(r.model->outputs()));
  auto t0 = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(r.model->Predict(x.data(), static_cast<int64_t>(x.size()), out.data()));
  double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json a = {{"outputs", out}, {"model_version", r.version}, {"latency_us", us}};
  for (float v : out) {
    if (!std::isfinite(v)) {
      a["outputs"] = nullptr;
      return Internal("model version " + r.version + " produced a non-finite output");
    }
  }
  return a.dump();
}

struct Server::Impl {
  ServerOptions o;
  Node* node = nullptr;
  int tcp = -1, unix_fd = -1, port = -1;
  std::atomic<bool> stop{false};
  std::atomic<int> open{0};
  std::vector<std::thread> acceptors;
  Mutex conns_mu;
  std::vector<int> conns GUARDED_BY(conns_mu);  // open connections, shut down by Stop

  static void SendAll(int fd, const std::string& s) {
    size_t at = 0;
    while (at < s.size()) {
      ssize_t n = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return;
      at += static_cast<size_t>(n);
    }
  }

  static std::string Answer(int status, const std::string& type, const std::string& body,
                            bool close) {
    const char* reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 411 ? "Length Required"
                         : status == 413 ? "Payload Too Large"
                         : status == 431 ? "Request Header Fields Too Large"
                         : status == 503 ? "Service Unavailable"
                         : status == 505 ? "HTTP Version Not Supported"
                                         : "Internal Server Error";
    return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) +
           (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + body;
  }

  static std::string Error(int status, const std::string& why, bool close) {
    return Answer(status, "application/json", nlohmann::json{{"error", why}}.dump(), close);
  }

  std::string Route(std::string_view method, std::string_view target, const std::string& body,
                    bool close) {
    if (target == "/healthz") return Answer(200, "text/plain", "ok\n", close);
    if (target == "/v1/model") {
      Node::Running r = node->Current();
      if (!r.model) return Error(503, "no model is loaded yet", close);
      const auto& h = r.model->header();
      nlohmann::json j = {{"name", h.value("name", "")},
                          {"model_version", r.version},
                          {"kind", r.model->kind()},
                          {"precision", r.model->precision()},
                          {"task", r.model->task()},
                          {"steps", r.model->steps()},
                          {"features", r.model->features()},
                          {"outputs", r.model->outputs()},
                          {"parameters", r.model->parameters()},
                          {"input", h.value("input", nlohmann::json::object())}};
      return Answer(200, "application/json", j.dump(), close);
    }
    if (target == "/metrics") {
      double p50 = 0, p99 = 0;
      node->Latency(&p50, &p99);
      Node::Running r = node->Current();
      std::string m =
          "# TYPE ronghe_edge_requests_total counter\nronghe_edge_requests_total " +
          std::to_string(node->requests()) +
          "\n# TYPE ronghe_edge_errors_total counter\nronghe_edge_errors_total " +
          std::to_string(node->errors()) +
          "\n# TYPE ronghe_edge_latency_seconds summary\n"
          "ronghe_edge_latency_seconds{quantile=\"0.5\"} " +
          std::to_string(p50 / 1e6) + "\nronghe_edge_latency_seconds{quantile=\"0.99\"} " +
          std::to_string(p99 / 1e6) + "\nronghe_edge_model_info{version=\"" + r.version + "\"} 1\n";
      return Answer(200, "text/plain; version=0.0.4", m, close);
    }
    if (target == "/v1/predict") {
      if (method != "POST") return Error(405, "use POST", close);
      auto t0 = std::chrono::steady_clock::now();
      auto r = PredictJson(*node, body);
      node->Record(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count(),
          r.ok());
      if (r.ok()) return Answer(200, "application/json", *r, close);
      const int status = r.status().code() == StatusCode::kInvalidArgument ? 400
                         : r.status().code() == StatusCode::kUnavailable   ? 503
                                                                           : 500;
      return Error(status, r.status().message(), close);
    }
    return Error(404, "no route " + std::string(target), close);
  }

  void Serve(int fd) {
    timeval tv{o.idle_timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string buf;
    char chunk[16384];
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        if (buf.size() > 64 * 1024) {
          SendAll(fd, Error(431, "headers over 64 KiB", true));
          return;
        }
        ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<size_t>(n));
      }
      HttpHead head;
      HttpHeadError err;
      if (!ParseHttpHead(std::string_view(buf).substr(0, end), &head, &err)) {
        SendAll(fd, Error(err.status, err.why, true));
        return;
      }
      if (head.chunked) {
        SendAll(fd, Error(411, "chunked bodies are not accepted; send Content-Length", true));
        return;
      }
      if (head.content_length > o.max_body_bytes) {
        SendAll(fd, Error(413, "body over " + std::to_string(o.max_body_bytes) + " bytes", true));
        return;
      }
      const size_t need = end + 4 + static_cast<size_t>(head.content_length);
      while (buf.size() < need) {
        ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<size_t>(n));
      }
      const std::string method(head.method), target(head.target);
      const std::string body = buf.substr(end + 4, static_cast<size_t>(head.content_length));
      buf.erase(0, need);
      SendAll(fd, Route(method, target, body, head.close));
      if (head.close || stop) return;
    }
  }

  void Accept(int lfd) {
    while (!stop) {
      pollfd p{lfd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      if (open.load() >= o.max_connections) {
        SendAll(fd, Error(503, "too many connections", true));
        ::close(fd);
        continue;
      }
      ++open;
      {
        MutexLock l(&conns_mu);
        conns.push_back(fd);
      }
      std::thread([this, fd] {
        Serve(fd);
        {
          MutexLock l(&conns_mu);
          conns.erase(std::find(conns.begin(), conns.end(), fd));
          ::close(fd);
        }
        --open;
      }).detach();
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Stop(); }
int Server::port() const { return impl_->port; }

void Server::Stop() {
  if (impl_->stop.exchange(true)) return;
  for (auto& t : impl_->acceptors) t.join();
  if (impl_->tcp >= 0) ::close(impl_->tcp);
  if (impl_->unix_fd >= 0) {
    ::close(impl_->unix_fd);
    ::unlink(impl_->o.socket_path.c_str());
  }
  // Open connections are shut down (their threads' reads return) and waited for: no thread
  // outlives the server.
  {
    MutexLock l(&impl_->conns_mu);
    for (int fd : impl_->conns) ::shutdown(fd, SHUT_RDWR);
  }
  while (impl_->open.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& o, Node* node) {
  auto impl = std::make_unique<Impl>();
  impl->o = o;
  impl->node = node;
  if (o.port < 0 && o.socket_path.empty())
    return InvalidArgument("give an HTTP port, a Unix socket path, or both");
  if (o.port >= 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(o.port));
    if (::inet_pton(AF_INET, o.host.c_str(), &a.sin_addr) != 1) {
      ::close(fd);
      return InvalidArgument("--host " + o.host + " is not an IPv4 address");
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
      std::string why = std::strerror(errno);
      ::close(fd);
      return Unavailable("cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " + why);
    }
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    impl->tcp = fd;
    impl->port = ntohs(a.sin_port);
  }
  if (!o.socket_path.empty()) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (o.socket_path.size() >= sizeof a.sun_path)
      return InvalidArgument("--socket " + o.socket_path + " is longer than a socket path may be");
    std::memcpy(a.sun_path, o.socket_path.c_str(), o.socket_path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::unlink(o.socket_path.c_str());  // a stale socket of a previous run
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
      std::string why = std::strerror(errno);
      ::close(fd);
      if (impl->tcp >= 0) ::close(impl->tcp);
      return Unavailable("cannot listen on " + o.socket_path + ": " + why);
    }
    ::chmod(o.socket_path.c_str(), 0660);
    impl->unix_fd = fd;
  }
  Impl* p = impl.get();
  if (p->tcp >= 0) p->acceptors.emplace_back([p] { p->Accept(p->tcp); });
  if (p->unix_fd >= 0) p->acceptors.emplace_back([p] { p->Accept(p->unix_fd); });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

}  // namespace ronghe::edge
