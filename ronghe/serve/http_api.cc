#include "ronghe/serve/http_api.h"

#include <charconv>
#include <vector>

#include "ronghe/base/version.h"
#include "ronghe/serve/experiment.h"

namespace ronghe::serve {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kHeaderLength = "Inference-Header-Content-Length";

void Reply(HttpReply* r, int status, std::string body) {
  r->status = status;
  r->content_type = "application/json";
  r->body = std::move(body);
}

void ReplyError(HttpReply* r, const Status& st) {
  Reply(r, HttpStatusOf(st), ErrorBody(st.message()));
}

// A model, version or experiment name as the routes accept it: [A-Za-z0-9_.-]+.
bool IsName(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Splits "/a/b/c" into {"a", "b", "c"}; a trailing slash or an empty segment makes it unrouted.
bool Segments(std::string_view path, std::vector<std::string_view>* out) {
  out->clear();
  if (path.empty() || path[0] != '/') return false;
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    if (next == pos) return false;
    out->push_back(path.substr(pos, next - pos));
    pos = next + 1;
  }
  return true;
}

}  // namespace

const char* HttpReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
  }
}

void HttpApi::Handle(const HttpCall& call, HttpReply* reply) {
  thread_local Pending pending;
  if (!Start(call, &pending, reply)) Finish(&pending, reply);
}

bool HttpApi::Start(const HttpCall& call, Pending* p, HttpReply* r) {
  p->start = Clock::now();
  p->route = "unrouted";
  p->bytes_in = call.body.size();
  r->status = 200;
  r->content_type = "application/json";
  r->body.clear();
  r->served_version.clear();
  r->inference_header_length = 0;
  const std::string_view path = call.target.substr(0, call.target.find('?'));
  if (server_->access_log_enabled()) {
    p->method.assign(call.method);
    p->path.assign(path);
    p->remote.assign(call.remote);
  }
  bool done = true;
  try {
    done = Route(call, path, p, r);
  } catch (const std::exception& e) {
    Reply(r, 500, ErrorBody(std::string("internal error: ") + e.what()));
  }
  if (done) Log(*p, *r);
  return done;
}

void HttpApi::Finish(Pending* p, HttpReply* r) {
  try {
    FinishInfer(p, r);
  } catch (const std::exception& e) {
    Reply(r, 500, ErrorBody(std::string("internal error: ") + e.what()));
  }
  Log(*p, *r);
}

void HttpApi::FinishInfer(Pending* p, HttpReply* r) {
  auto result = server_->FinishInfer(&p->infer);
  if (!result.ok()) return ReplyError(r, result.status());
  r->served_version = result->model + ":" + result->version;
  r->status = 200;
  r->body = EncodeInferResponse(result->model, result->version, p->msg, result->outputs,
                                result->parameters, &r->inference_header_length);
  r->content_type =
      r->inference_header_length > 0 ? "application/octet-stream" : "application/json";
}

bool HttpApi::Route(const HttpCall& call, std::string_view path, Pending* p, HttpReply* r) {
  thread_local std::vector<std::string_view> seg;
  const bool get = call.method == "GET", post = call.method == "POST";
  auto unrouted = [&] {
    p->route = "unrouted";
    ReplyError(r, NotFound("no such endpoint: " + std::string(call.method.substr(0, 16)) + " " +
                           std::string(path.substr(0, 256))));
    return true;
  };
  if (!Segments(path, &seg) || seg[0] != "v2") {
    if (path == "/metrics" && get) {
      p->route = "metrics";
      r->status = 200;
      r->content_type = "text/plain; version=0.0.4";
      r->body = server_->Metrics();
      return true;
    }
    return unrouted();
  }
  const size_t n = seg.size();
  if (n == 1 && get) {
    p->route = "server";
    Reply(r, 200,
          json{{"name", "ronghe"},
               {"version", Version()},
               {"extensions",
                {"binary_tensor_data", "model_repository", "statistics", "experiments", "cascade"}}}
              .dump());
    return true;
  }
  if (n == 3 && seg[1] == "health" && get) {
    if (seg[2] == "live") {
      p->route = "live";
      Reply(r, 200, R"({"live":true})");
      return true;
    }
    if (seg[2] == "ready") {
      p->route = "ready";
      bool ready = server_->Ready();
      Reply(r, ready ? 200 : 503, ready ? R"({"ready":true})" : R"({"ready":false})");
      return true;
    }
    return unrouted();
  }
  if (n >= 3 && seg[1] == "models" && IsName(seg[2])) {
    const std::string model(seg[2]);
    size_t i = 3;
    std::string version;
    if (n >= 5 && seg[3] == "versions" && IsName(seg[4])) {
      version.assign(seg[4]);
      i = 5;
    }
    if (i == n && get) {
      p->route = "model_metadata";
      auto j = server_->ModelMetadata(model, version);
      if (!j.ok()) return ReplyError(r, j.status()), true;
      Reply(r, 200, j->dump());
      return true;
    }
    if (i + 1 != n) return unrouted();
    if (seg[i] == "ready" && get) {
      p->route = "model_ready";
      Status st = server_->ModelReady(model, version);
      if (!st.ok()) return ReplyError(r, st), true;
      Reply(r, 200, R"({"ready":true})");
      return true;
    }
    if (seg[i] == "infer" && post) {
      p->route = "infer";
      // The binary tensor extension: the header says how much of the body is JSON.
      size_t header_length = 0;
      if (call.has_header_length) {
        std::string_view h = call.header_length;
        auto [end, ec] = std::from_chars(h.data(), h.data() + h.size(), header_length);
        if (ec != std::errc() || end != h.data() + h.size() || header_length == 0) {
          ReplyError(
              r, InvalidArgument(std::string(kHeaderLength) + ": '" + std::string(h.substr(0, 32)) +
                                 "' is not a positive byte count"));
          return true;
        }
      }
      auto msg = DecodeInferRequest(call.body, {}, header_length);
      if (!msg.ok()) return ReplyError(r, msg.status()), true;
      p->msg = std::move(msg).value();
      server_->BeginInfer(model, version, p->msg, &p->infer);
      return false;
    }
    if (seg[i] == "feedback" && post && i == 3) {
      p->route = "feedback";
      if (call.body.size() > 1 << 20)
        return ReplyError(r, InvalidArgument("feedback body over 1 MiB")), true;
      json body = json::parse(call.body, nullptr, false);
      if (body.is_discarded())
        return ReplyError(r, InvalidArgument("feedback body is not valid JSON")), true;
      Status st = server_->Feedback(model, body);
      if (!st.ok()) return ReplyError(r, st), true;
      Reply(r, 200, "{}");
      return true;
    }
    return unrouted();
  }
  if (n == 3 && seg[1] == "repository" && seg[2] == "index" && (get || post)) {
    p->route = "repository_index";
    Reply(r, 200, server_->RepositoryIndex().dump());
    return true;
  }
  if (n == 5 && seg[1] == "repository" && seg[2] == "models" && IsName(seg[3]) && post &&
      (seg[4] == "load" || seg[4] == "unload")) {
    p->route = "repository_load";
    const std::string m(seg[3]);
    Status st = seg[4] == "load" ? server_->Load(m) : server_->Unload(m);
    if (!st.ok()) return ReplyError(r, st), true;
    Reply(r, 200, "{}");
    return true;
  }
  if (n >= 2 && seg[1] == "experiments") {
    if (n == 2 && get) {
      p->route = "experiments";
      Reply(r, 200, json(server_->experiments()->List()).dump());
      return true;
    }
    if (n == 3 && get && IsName(seg[2])) {
      p->route = "experiment";
      auto rep = server_->experiments()->Report(std::string(seg[2]));
      if (!rep.ok()) return ReplyError(r, rep.status()), true;
      Reply(r, 200, ReportJson(*rep).dump());
      return true;
    }
    if (n == 4 && post && IsName(seg[2]) && (seg[3] == "promote" || seg[3] == "rollback")) {
      p->route = "experiment_decide";
      const std::string name(seg[2]);
      const bool promote = seg[3] == "promote";
      std::string variant;
      json body =
          json::parse(call.body.empty() ? std::string_view("{}") : call.body, nullptr, false);
      if (body.is_object() && body.contains("variant") && body["variant"].is_string()) {
        variant = body["variant"].get<std::string>();
      }
      auto chosen = server_->experiments()->Conclude(name, promote, variant);
      if (!chosen.ok()) return ReplyError(r, chosen.status()), true;
      Reply(r, 200,
            json{{"experiment", name},
                 {"status", promote ? "promoted" : "rolled_back"},
                 {"variant", *chosen}}
                .dump());
      return true;
    }
  }
  return unrouted();
}

void HttpApi::Log(const Pending& p, const HttpReply& r) {
  if (!server_->access_log_enabled()) return;  // no log line built per request for nobody
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - p.start).count();
  json line = {
      {"ts",
       std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()},
      {"remote", p.remote},
      {"method", p.method},
      {"path", p.path},
      {"route", p.route},
      {"status", r.status},
      {"bytes_in", p.bytes_in},
      {"bytes_out", r.body.size()},
      {"ms", ms}};
  if (!r.served_version.empty()) line["version"] = r.served_version;
  if (r.status >= 400 && r.body.size() < 512) {
    json b = json::parse(r.body, nullptr, false);
    if (b.is_object() && b.contains("error")) line["error"] = b["error"];
  }
  server_->AccessLog(line);
}

}  // namespace ronghe::serve
