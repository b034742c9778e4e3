#include "ronghe/base/http_head.h"

#include <cctype>
#include <charconv>

namespace ronghe {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

namespace {
std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

// Whether a comma-separated header value holds `token` (case-insensitive).
bool HasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (IEquals(Trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool ParseHttpHead(std::string_view head, HttpHead* out, HttpHeadError* err) {
  *out = HttpHead{};
  auto fail = [&](int status, std::string why) {
    err->status = status;
    err->why = std::move(why);
    return false;
  };
  const size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return fail(400, "malformed request line (want METHOD TARGET HTTP/1.1)");
  }
  out->method = line.substr(0, sp1);
  out->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.0") {
    out->http10 = true;
  } else if (version != "HTTP/1.1") {
    if (version.substr(0, 5) == "HTTP/") {
      return fail(505, "HTTP version " + std::string(version.substr(0, 16)) +
                           " not supported (1.0 and 1.1 are)");
    }
    return fail(400, "malformed request line (want METHOD TARGET HTTP/1.1)");
  }
  // Headers: only the few this server acts on are looked at.
  bool have_length = false, want_close = false, want_keep = false;
  size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string_view::npos) next = head.size();
    const std::string_view h = head.substr(pos, next - pos);
    pos = next + 2;
    const size_t colon = h.find(':');
    // No space before the colon (RFC 9112 5.1: a request smuggling vector).
    if (colon == std::string_view::npos || colon == 0 || h[colon - 1] == ' ' ||
        h[colon - 1] == '\t') {
      return fail(400, "malformed header line");
    }
    const std::string_view name = h.substr(0, colon), value = Trim(h.substr(colon + 1));
    if (IEquals(name, "Content-Length")) {
      int64_t v = -1;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() || v < 0 ||
          (have_length && v != out->content_length)) {
        return fail(400, "bad Content-Length '" + std::string(value.substr(0, 32)) + "'");
      }
      out->content_length = v;
      have_length = true;
    } else if (IEquals(name, "Transfer-Encoding")) {
      out->chunked = true;
    } else if (IEquals(name, "Connection")) {
      want_close = want_close || HasToken(value, "close");
      want_keep = want_keep || HasToken(value, "keep-alive");
    } else if (IEquals(name, "Expect")) {
      out->expect_continue = IEquals(value, "100-continue");
    } else if (IEquals(name, "Inference-Header-Content-Length")) {
      out->has_header_length = true;
      out->header_length = value;
    }
  }
  out->close = want_close || (out->http10 && !want_keep);
  return true;
}

}  // namespace ronghe
