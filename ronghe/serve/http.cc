#include "ronghe/serve/http.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include <thread>

#include "ronghe/base/openssl.h"
#include "ronghe/serve/event_http.h"
#include "ronghe/serve/http_api.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

constexpr const char* kHeaderLength = "Inference-Header-Content-Length";

}  // namespace

struct HttpFrontend::Impl {
  InferenceServer* server = nullptr;
  HttpOptions options;
  std::unique_ptr<HttpApi> api;
  std::unique_ptr<EventHttpServer> event;  // plaintext
  std::unique_ptr<httplib::Server> http;   // TLS: httplib::SSLServer
  std::thread listener;
  int port = 0;
  int listen_fd = -1;
  bool stopped = false;

  // Every request goes to the one route table (HttpApi), whatever its method and path.
  void Routes() {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      HttpCall call;
      call.method = req.method;
      call.target = req.path;
      call.body = req.body;
      std::string header_length;
      if (req.has_header(kHeaderLength)) {
        header_length = req.get_header_value(kHeaderLength);
        call.has_header_length = true;
        call.header_length = header_length;
      }
      call.remote = req.remote_addr;
      HttpReply reply;
      api->Handle(call, &reply);
      res.status = reply.status;
      if (!reply.served_version.empty()) res.set_header("x-ronghe-version", reply.served_version);
      if (reply.inference_header_length > 0) {
        res.set_header(kHeaderLength, std::to_string(reply.inference_header_length));
      }
      res.set_content(std::move(reply.body), reply.content_type);
    };
    const char* all = R"(.*)";
    http->Get(all, handler);
    http->Post(all, handler);
    http->Put(all, handler);
    http->Delete(all, handler);
    http->Patch(all, handler);
    // Bodies over the limit (413) and other library-made errors get the protocol's
    // {"error": ...} body instead of an empty one.
    http->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string why = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                        : res.status == 413 ? "request body too large"
                                            : "HTTP " + std::to_string(res.status);
      res.set_content(ErrorBody(why), "application/json");
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
          res.status = 500;
          res.set_content(ErrorBody(why), "application/json");
        });
  }
};

HttpFrontend::HttpFrontend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpFrontend>> HttpFrontend::Start(InferenceServer* server,
                                                          const HttpOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->server = server;
  impl->options = options;
  impl->api = std::make_unique<HttpApi>(server);
  if (!options.tls.enabled()) {
    EventHttpOptions eo;
    eo.host = options.host;
    eo.port = options.port;
    eo.loops = options.loops;
    eo.max_body_bytes = options.max_body_bytes;
    ASSIGN_OR_RETURN(impl->event, EventHttpServer::Start(impl->api.get(), eo));
    impl->port = impl->event->port();
    return std::unique_ptr<HttpFrontend>(new HttpFrontend(std::move(impl)));
  }
  {
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
  if (impl_->event) return impl_->event->Stop();
  impl_->http->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace ronghe::serve
