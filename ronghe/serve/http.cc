#include "ronghe/serve/http.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include <charconv>
#include <chrono>
#include <thread>

#include "ronghe/base/openssl.h"
#include "ronghe/base/version.h"
#include "ronghe/serve/experiment.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kJson = "application/json";
constexpr const char* kHeaderLength = "Inference-Header-Content-Length";

void Reply(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, kJson);
}

void ReplyError(httplib::Response& res, const Status& st) {
  Reply(res, HttpStatusOf(st), ErrorBody(st.message()));
}

std::string Group(const httplib::Request& req, size_t i) {
  return req.matches.size() > i ? req.matches[i].str() : "";
}

}  // namespace

struct HttpFrontend::Impl {
  InferenceServer* server = nullptr;
  HttpOptions options;
  std::unique_ptr<httplib::Server> http;  // httplib::SSLServer with TLS
  std::thread listener;
  int port = 0;
  int listen_fd = -1;
  bool stopped = false;

  // Wraps a handler with the access log line and a guard against exceptions.
  httplib::Server::Handler Logged(const char* route, httplib::Server::Handler h) {
    return [this, route, h](const httplib::Request& req, httplib::Response& res) {
      auto start = Clock::now();
      try {
        h(req, res);
      } catch (const std::exception& e) {
        Reply(res, 500, ErrorBody(std::string("internal error: ") + e.what()));
      }
      if (!server->access_log_enabled()) return;  // no log line built per request for nobody
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      json line = {
          {"ts", std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                     .count()},
          {"remote", req.remote_addr},
          {"method", req.method},
          {"path", req.path},
          {"route", route},
          {"status", res.status},
          {"bytes_in", req.body.size()},
          {"bytes_out", res.body.size()},
          {"ms", ms}};
      if (res.has_header("x-ronghe-version"))
        line["version"] = res.get_header_value("x-ronghe-version");
      if (res.status >= 400 && res.body.size() < 512) {
        json b = json::parse(res.body, nullptr, false);
        if (b.is_object() && b.contains("error")) line["error"] = b["error"];
      }
      server->AccessLog(line);
    };
  }

  void Routes() {
    http->Get("/v2/health/live",
              Logged("live", [](const httplib::Request&, httplib::Response& res) {
                Reply(res, 200, R"({"live":true})");
              }));
    http->Get("/v2/health/ready",
              Logged("ready", [this](const httplib::Request&, httplib::Response& res) {
                bool ready = server->Ready();
                Reply(res, ready ? 200 : 503, ready ? R"({"ready":true})" : R"({"ready":false})");
              }));
    http->Get("/v2", Logged("server", [](const httplib::Request&, httplib::Response& res) {
                Reply(res, 200,
                      json{{"name", "ronghe"},
                           {"version", Version()},
                           {"extensions",
                            {"binary_tensor_data", "model_repository", "statistics", "experiments",
                             "cascade"}}}
                          .dump());
              }));
    http->Get("/metrics",
              Logged("metrics", [this](const httplib::Request&, httplib::Response& res) {
                res.status = 200;
                res.set_content(server->Metrics(), "text/plain; version=0.0.4");
              }));
    const std::string model = R"(/v2/models/([A-Za-z0-9_.\-]+)(?:/versions/([A-Za-z0-9_.\-]+))?)";
    http->Post(model + "/infer",
               Logged("infer", [this](const httplib::Request& req, httplib::Response& res) {
                 // The binary tensor extension: the header says how much of the body is JSON.
                 size_t header_length = 0;
                 if (req.has_header(kHeaderLength)) {
                   const std::string h = req.get_header_value(kHeaderLength);
                   auto [end, ec] = std::from_chars(h.data(), h.data() + h.size(), header_length);
                   if (ec != std::errc() || end != h.data() + h.size() || header_length == 0) {
                     return ReplyError(
                         res, InvalidArgument(std::string(kHeaderLength) + ": '" + h.substr(0, 32) +
                                              "' is not a positive byte count"));
                   }
                 }
                 auto msg = DecodeInferRequest(req.body, {}, header_length);
                 if (!msg.ok()) return ReplyError(res, msg.status());
                 auto r = server->Infer(Group(req, 1), Group(req, 2), *msg);
                 if (!r.ok()) return ReplyError(res, r.status());
                 res.set_header("x-ronghe-version", r->model + ":" + r->version);
                 size_t out_header = 0;
                 std::string body = EncodeInferResponse(r->model, r->version, *msg, r->outputs,
                                                        r->parameters, &out_header);
                 res.status = 200;
                 if (out_header > 0) {
                   res.set_header(kHeaderLength, std::to_string(out_header));
                   res.set_content(std::move(body), "application/octet-stream");
                 } else {
                   res.set_content(std::move(body), kJson);
                 }
               }));
    http->Get(model + "/ready",
              Logged("model_ready", [this](const httplib::Request& req, httplib::Response& res) {
                Status st = server->ModelReady(Group(req, 1), Group(req, 2));
                if (!st.ok()) return ReplyError(res, st);
                Reply(res, 200, R"({"ready":true})");
              }));
    http->Get(model,
              Logged("model_metadata", [this](const httplib::Request& req, httplib::Response& res) {
                auto j = server->ModelMetadata(Group(req, 1), Group(req, 2));
                if (!j.ok()) return ReplyError(res, j.status());
                Reply(res, 200, j->dump());
              }));
    http->Post(R"(/v2/models/([A-Za-z0-9_.\-]+)/feedback)",
               Logged("feedback", [this](const httplib::Request& req, httplib::Response& res) {
                 if (req.body.size() > 1 << 20)
                   return ReplyError(res, InvalidArgument("feedback body over 1 MiB"));
                 json body = json::parse(req.body, nullptr, false);
                 if (body.is_discarded())
                   return ReplyError(res, InvalidArgument("feedback body is not valid JSON"));
                 Status st = server->Feedback(Group(req, 1), body);
                 if (!st.ok()) return ReplyError(res, st);
                 Reply(res, 200, "{}");
               }));
    auto index =
        Logged("repository_index", [this](const httplib::Request&, httplib::Response& res) {
          Reply(res, 200, server->RepositoryIndex().dump());
        });
    http->Post("/v2/repository/index", index);
    http->Get("/v2/repository/index", index);
    http->Post(
        R"(/v2/repository/models/([A-Za-z0-9_.\-]+)/(load|unload))",
        Logged("repository_load", [this](const httplib::Request& req, httplib::Response& res) {
          std::string m = Group(req, 1);
          Status st = Group(req, 2) == "load" ? server->Load(m) : server->Unload(m);
          if (!st.ok()) return ReplyError(res, st);
          Reply(res, 200, "{}");
        }));
    http->Get("/v2/experiments",
              Logged("experiments", [this](const httplib::Request&, httplib::Response& res) {
                Reply(res, 200, json(server->experiments()->List()).dump());
              }));
    http->Get(R"(/v2/experiments/([A-Za-z0-9_.\-]+))",
              Logged("experiment", [this](const httplib::Request& req, httplib::Response& res) {
                auto r = server->experiments()->Report(Group(req, 1));
                if (!r.ok()) return ReplyError(res, r.status());
                Reply(res, 200, ReportJson(*r).dump());
              }));
    http->Post(
        R"(/v2/experiments/([A-Za-z0-9_.\-]+)/(promote|rollback))",
        Logged("experiment_decide", [this](const httplib::Request& req, httplib::Response& res) {
          bool promote = Group(req, 2) == "promote";
          std::string variant;
          json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
          if (body.is_object() && body.contains("variant") && body["variant"].is_string()) {
            variant = body["variant"].get<std::string>();
          }
          auto chosen = server->experiments()->Conclude(Group(req, 1), promote, variant);
          if (!chosen.ok()) return ReplyError(res, chosen.status());
          Reply(res, 200,
                json{{"experiment", Group(req, 1)},
                     {"status", promote ? "promoted" : "rolled_back"},
                     {"variant", *chosen}}
                    .dump());
        }));
    // Unrouted paths (404), bodies over the limit (413) and other library-made errors get the
    // protocol's {"error": ...} body instead of an empty one.
    http->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string why = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                        : res.status == 413 ? "request body too large"
                                            : "HTTP " + std::to_string(res.status);
      res.set_content(ErrorBody(why), kJson);
    });
    http->set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string why = "internal error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            why += std::string(": ") + e.what();
          } catch (...) {
          }
          Reply(res, 500, ErrorBody(why));
        });
  }
};

HttpFrontend::HttpFrontend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpFrontend>> HttpFrontend::Start(InferenceServer* server,
                                                          const HttpOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->server = server;
  impl->options = options;
  if (options.tls.enabled()) {
    // Checked here so that a bad file is named now rather than failing every handshake.
    RETURN_IF_ERROR(LoadTls(options.tls).status());
    const TlsOptions tls = options.tls;
    auto ssl = std::make_unique<httplib::SSLServer>([tls](SSL_CTX& ctx) {
      SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
      if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1 ||
          SSL_CTX_use_certificate_chain_file(&ctx, tls.cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(&ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(&ctx) != 1) {
        return false;
      }
      if (!tls.client_ca_file.empty()) {
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
        if (!names ||
            SSL_CTX_load_verify_locations(&ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
          if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
          return false;
        }
        SSL_CTX_set_client_CA_list(&ctx, names);  // takes ownership
        SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      }
      return true;
    });
    if (!ssl->is_valid()) {
      return InvalidArgument(
          OpenSslError(options.tls.cert_file + ": OpenSSL refused the TLS set-up"));
    }
    impl->http = std::move(ssl);
  } else {
    impl->http = std::make_unique<httplib::Server>();
  }
  int threads = std::max(1, options.threads);
  impl->http->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  impl->http->set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
  impl->http->set_keep_alive_max_count(1000000);
  impl->http->set_tcp_nodelay(true);
  // cpp-httplib sets SO_REUSEPORT by default, which lets a second server bind a port in use and
  // silently take half its connections; only SO_REUSEADDR (restart over TIME_WAIT) is wanted.
  Impl* self = impl.get();
  impl->http->set_socket_options([self](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    self->listen_fd = sock;
  });
  impl->Routes();
  if (options.port == 0) {
    impl->port = impl->http->bind_to_any_port(options.host);
  } else if (impl->http->bind_to_port(options.host, options.port)) {
    impl->port = options.port;
  } else {
    impl->port = -1;
  }
  // cpp-httplib listens with a backlog of 5: a burst of new connections overflowed it and some
  // clients' first request failed (seen in the concurrency test). listen() again on the bound
  // socket raises the backlog.
  if (impl->port > 0 && impl->listen_fd >= 0) ::listen(impl->listen_fd, SOMAXCONN);
  if (impl->port <= 0) {
    return Unavailable("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                       " (in use, or not an address of this host)");
  }
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] { raw->http->listen_after_bind(); });
  return std::unique_ptr<HttpFrontend>(new HttpFrontend(std::move(impl)));
}

HttpFrontend::~HttpFrontend() { Stop(); }

int HttpFrontend::port() const { return impl_->port; }

void HttpFrontend::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->http->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace ronghe::serve
