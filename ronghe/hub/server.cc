#include "ronghe/hub/server.h"

#include <httplib.h>
#include <openssl/ssl.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/openssl.h"
#include "ronghe/hub/attest.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/hub.h"
#include "ronghe/hub/metadata.h"

namespace ronghe::hub {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// The subset of Markdown model cards use: headings, bullet lists, paragraphs. Everything is
// escaped first, so a card cannot inject markup or script.
std::string CardHtml(const std::string& md) {
  std::string out, para;
  bool in_list = false;
  auto flush = [&] {
    if (!para.empty()) out += "<p>" + para + "</p>\n";
    para.clear();
  };
  size_t pos = 0;
  while (pos <= md.size()) {
    size_t eol = md.find('\n', pos);
    if (eol == std::string::npos) eol = md.size();
    std::string line = md.substr(pos, eol - pos);
    pos = eol + 1;
    const bool item = line.rfind("- ", 0) == 0 || line.rfind("* ", 0) == 0;
    if (!item && in_list) {
      out += "</ul>\n";
      in_list = false;
    }
    if (line.empty()) {
      flush();
    } else if (line.rfind("### ", 0) == 0) {
      flush();
      out += "<h3>" + Escape(line.substr(4)) + "</h3>\n";
    } else if (line.rfind("## ", 0) == 0) {
      flush();
      out += "<h2>" + Escape(line.substr(3)) + "</h2>\n";
    } else if (line.rfind("# ", 0) == 0) {
      flush();
      out += "<h1>" + Escape(line.substr(2)) + "</h1>\n";
    } else if (item) {
      flush();
      if (!in_list) out += "<ul>\n";
      in_list = true;
      out += "<li>" + Escape(line.substr(2)) + "</li>\n";
    } else {
      para += (para.empty() ? "" : " ") + Escape(line);
    }
    if (eol == md.size()) break;
  }
  if (in_list) out += "</ul>\n";
  flush();
  return out;
}

struct Listed {
  std::string name, version, published, model_sha256;
  json metrics = json::object();
  bool certified = false;
  std::string card;
};

// Whether a passing certification by a current certifier key, about this artifact, is stored
// for NAME@VERSION: the same test a client makes (attest.h), on the hub's own files.
bool CertifiedHere(const std::string& dir, const Root& root, const std::string& name,
                   const std::string& version, const std::string& sha256) {
  auto role = root.roles.find("certifier");
  if (role == root.roles.end() || sha256.empty()) return false;
  for (const std::string& keyid : role->second.keyids) {
    auto text = ReadFile(dir + "/attestations/" + name + "/" + version + "/" + keyid + ".json");
    if (!text.ok()) continue;
    auto c = VerifyAttestation(json::parse(*text, nullptr, false), root, keyid, name, version,
                               sha256, "attestation");
    if (c.ok() && c->passed()) return true;
  }
  return false;
}

// The hub's own view of its models (its current targets metadata), latest version of each.
Result<std::map<std::string, Listed>> Latest(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(dir + "/metadata/targets.json"));
  json env = json::parse(text, nullptr, false);
  if (env.is_discarded() || !env.contains("signed"))
    return DataLoss(dir + ": targets metadata unreadable");
  ASSIGN_OR_RETURN(std::string root_text, ReadFile(dir + "/metadata/root.json"));
  json root_env = json::parse(root_text, nullptr, false);
  if (root_env.is_discarded() || !root_env.contains("signed"))
    return DataLoss(dir + ": root metadata unreadable");
  ASSIGN_OR_RETURN(Root root, Root::FromJson(root_env["signed"]));
  std::map<std::string, Listed> latest;
  for (auto it = env["signed"]["targets"].begin(); it != env["signed"]["targets"].end(); ++it) {
    const json c = it.value().value("custom", json::object());
    const std::string name = c.value("name", ""), version = c.value("version", "");
    auto found = latest.find(name);
    if (found != latest.end() && CompareVersions(found->second.version, version) >= 0) continue;
    Listed l;
    l.name = name;
    l.version = version;
    l.published = c.value("published", "");
    latest[name] = l;
  }
  // The model file's signed digest, for the certification check.
  for (auto it = env["signed"]["targets"].begin(); it != env["signed"]["targets"].end(); ++it) {
    const json c = it.value().value("custom", json::object());
    auto found = latest.find(c.value("name", ""));
    if (found != latest.end() && found->second.version == c.value("version", "") &&
        c.value("kind", "") == "model" && it.value().contains("hashes")) {
      found->second.model_sha256 = it.value()["hashes"].value("sha256", "");
    }
  }
  for (auto& [name, l] : latest) {
    const std::string base = dir + "/targets/" + name + "/" + l.version;
    if (auto p = ReadFile(base + "/provenance.json"); p.ok()) {
      json pj = json::parse(*p, nullptr, false);
      if (pj.is_object() && pj.contains("manifest") && pj["manifest"].contains("metrics")) {
        l.metrics = pj["manifest"]["metrics"];
      }
    }
    if (auto card = ReadFile(base + "/card.md"); card.ok()) l.card = *card;
    l.certified = CertifiedHere(dir, root, name, l.version, l.model_sha256);
  }
  return latest;
}

// "name value, ..." of the test split when the metrics are per split, else of the top level.
std::string MetricsText(const json& all) {
  std::string out;
  if (!all.is_object()) return out;
  const json& m = all.contains("test") && all["test"].is_object() ? all["test"] : all;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_number()) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4f", it.value().get<double>());
    out += (out.empty() ? "" : ", ") + Escape(it.key()) + " " + buf;
  }
  return out;
}

const char* kStyle =
    "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:"
    "collapse}td,th{border:1px solid #ccc;padding:.3em .6em}.ok{color:#070}.no{color:#a00}</style>";

// A path under metadata/, targets/ or attestations/ made of plain segments of [A-Za-z0-9._-].
bool ServablePath(const std::string& p) {
  if (!(p.rfind("metadata/", 0) == 0 || p.rfind("targets/", 0) == 0 ||
        p.rfind("attestations/", 0) == 0) ||
      !PlainRelativePath(p)) {
    return false;
  }
  for (char c : p) {
    const bool ok =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '/';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<std::string> HubIndexHtml(const std::string& dir) {
  ASSIGN_OR_RETURN(auto latest, Latest(dir));
  std::string h = "<!doctype html><html><head><meta charset=\"utf-8\"><title>ronghe hub</title>" +
                  std::string(kStyle) + "</head><body><h1>ronghe hub</h1>\n";
  h += "<table><tr><th>model</th><th>latest</th><th>certification</th><th>metrics</th></tr>\n";
  for (const auto& [name, l] : latest) {
    h += "<tr><td><a href=\"/models/" + Escape(name) + "\">" + Escape(name) + "</a></td><td>" +
         Escape(l.version) + "</td><td>" +
         (l.certified ? "<span class=\"ok\">certified</span>"
                      : "<span class=\"no\">not certified</span>") +
         "</td><td>" + MetricsText(l.metrics) + "</td></tr>\n";
  }
  h += "</table>\n<p>" + std::to_string(latest.size()) +
       " model(s). Every file is signed; verify with <code>ronghe hub "
       "pull</code>.</p></body></html>\n";
  return h;
}

Result<std::string> HubModelHtml(const std::string& dir, const std::string& name) {
  ASSIGN_OR_RETURN(auto latest, Latest(dir));
  auto it = latest.find(name);
  if (it == latest.end()) return NotFound("no model '" + name + "'");
  const Listed& l = it->second;
  std::string h = "<!doctype html><html><head><meta charset=\"utf-8\"><title>" + Escape(name) +
                  " - ronghe hub</title>" + kStyle + "</head><body>\n";
  h += "<p><a href=\"/\">all models</a></p>\n<p>" + Escape(name) + " " + Escape(l.version) +
       ", published " + Escape(l.published) + ", " +
       (l.certified ? "<span class=\"ok\">certified</span>"
                    : "<span class=\"no\">not certified</span>") +
       "</p>\n<p>metrics: " + MetricsText(l.metrics) + "</p>\n<hr>\n" + CardHtml(l.card) +
       "</body></html>\n";
  return h;
}

struct HubServer::Impl {
  HubServeOptions options;
  std::unique_ptr<httplib::Server> http;
  std::thread listener, refresher;
  int port = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool stopped = false;
};

HubServer::HubServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HubServer>> HubServer::Start(const HubServeOptions& o) {
  if (!FileExists(o.dir + "/metadata/root.json")) {
    return NotFound(o.dir + ": not a hub (no metadata/root.json)");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  if (o.tls.enabled()) {
    RETURN_IF_ERROR(tls::LoadTls(o.tls).status());
    const tls::TlsOptions t = o.tls;
    auto ssl = std::make_unique<httplib::SSLServer>([t](SSL_CTX& ctx) {
      SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
      return SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) == 1 &&
             SSL_CTX_use_certificate_chain_file(&ctx, t.cert_file.c_str()) == 1 &&
             SSL_CTX_use_PrivateKey_file(&ctx, t.key_file.c_str(), SSL_FILETYPE_PEM) == 1 &&
             SSL_CTX_check_private_key(&ctx) == 1;
    });
    if (!ssl->is_valid())
      return InvalidArgument(OpenSslError(o.tls.cert_file + ": OpenSSL refused the TLS set-up"));
    impl->http = std::move(ssl);
  } else {
    impl->http = std::make_unique<httplib::Server>();
  }
  const std::string dir = o.dir;
  auto html = [](httplib::Response& res, const Result<std::string>& page) {
    if (!page.ok()) {
      res.status = page.status().code() == StatusCode::kNotFound ? 404 : 500;
      res.set_content(page.status().message(), "text/plain");
      return;
    }
    res.set_content(*page, "text/html; charset=utf-8");
  };
  impl->http->Get("/", [dir, html](const httplib::Request&, httplib::Response& res) {
    html(res, HubIndexHtml(dir));
  });
  impl->http->Get(R"(/models/([a-z0-9._-]+))",
                  [dir, html](const httplib::Request& req, httplib::Response& res) {
                    html(res, HubModelHtml(dir, req.matches[1].str()));
                  });
  impl->http->Get(R"(/(.+))", [dir](const httplib::Request& req, httplib::Response& res) {
    const std::string rel = req.matches[1].str();
    std::error_code ec;
    const std::string path = dir + "/" + rel;
    if (!ServablePath(rel) || !fs::is_regular_file(path, ec)) {
      res.status = 404;
      res.set_content("not found: /" + rel.substr(0, 200), "text/plain");
      return;
    }
    const auto size = static_cast<size_t>(fs::file_size(path, ec));
    auto in = std::make_shared<std::ifstream>(path, std::ios::binary);
    res.set_content_provider(size,
                             rel.size() > 5 && rel.substr(rel.size() - 5) == ".json"
                                 ? "application/json"
                                 : "application/octet-stream",
                             [in](size_t offset, size_t length, httplib::DataSink& sink) {
                               std::vector<char> buf(std::min<size_t>(length, 1 << 20));
                               in->seekg(static_cast<std::streamoff>(offset));
                               in->read(buf.data(), static_cast<std::streamsize>(buf.size()));
                               const auto n = in->gcount();
                               if (n <= 0) return false;
                               return sink.write(buf.data(), static_cast<size_t>(n));
                             });
  });
  impl->http->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  if (o.port == 0) {
    impl->port = impl->http->bind_to_any_port(o.host);
  } else if (impl->http->bind_to_port(o.host, o.port)) {
    impl->port = o.port;
  } else {
    impl->port = -1;
  }
  if (impl->port <= 0) {
    return Unavailable("cannot listen on " + o.host + ":" + std::to_string(o.port));
  }
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] { raw->http->listen_after_bind(); });
  if (o.refresh_every_s > 0 && FileExists(o.dir + "/keys/online.key")) {
    impl->refresher = std::thread([raw] {
      std::unique_lock<std::mutex> l(raw->mu);
      while (!raw->cv.wait_for(l, std::chrono::duration<double>(raw->options.refresh_every_s),
                               [raw] { return raw->stopping; })) {
        l.unlock();
        (void)Refresh(raw->options.dir);
        l.lock();
      }
    });
  }
  return std::unique_ptr<HubServer>(new HubServer(std::move(impl)));
}

HubServer::~HubServer() { Stop(); }

int HubServer::port() const { return impl_->port; }

void HubServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->http->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
  if (impl_->refresher.joinable()) impl_->refresher.join();
}

}  // namespace ronghe::hub
