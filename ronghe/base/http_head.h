// HTTP/1.x request heads, parsed strictly (request smuggling shapes are refused): the one parser
// of ronghe's own HTTP servers (serve's event loops, ronghe-edge).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ronghe {

// One request head (request line and headers, without the blank line that ends them), parsed:
// views into the head.
struct HttpHead {
  std::string_view method, target;
  bool http10 = false;
  int64_t content_length = 0;
  bool chunked = false;  // a Transfer-Encoding was sent
  bool close = false;    // close after the answer (Connection, or HTTP/1.0 without keep-alive)
  bool expect_continue = false;
  bool has_header_length = false;  // Inference-Header-Content-Length
  std::string_view header_length;
};
struct HttpHeadError {
  int status = 400;  // 400 malformed, 505 another HTTP version
  std::string why;
};
// false: the head cannot be served, `err` says with what status and why.
bool ParseHttpHead(std::string_view head, HttpHead* out, HttpHeadError* err);

// Case-insensitive ASCII equality; a comma-separated header value holding `token`.
bool IEquals(std::string_view a, std::string_view b);
bool HasToken(std::string_view value, std::string_view token);

}  // namespace ronghe
