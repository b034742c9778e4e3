// The HTTP/1.x request-head parser of the event front end, on its own (the whole server over
// sockets is tested in http_test.cc).
#include "ronghe/serve/event_http.h"

#include <gtest/gtest.h>

namespace ronghe::serve {
namespace {

TEST(HttpHeadTest, ParsesWhatInferenceClientsSend) {
  HttpHead h;
  HttpHeadError e;
  ASSERT_TRUE(ParseHttpHead(
      "POST /v2/models/m/infer?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length:  17 \r\n"
      "Inference-Header-Content-Length: 9\r\nEXPECT: 100-Continue\r\nConnection: keep-alive",
      &h, &e))
      << e.why;
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/v2/models/m/infer?x=1");
  EXPECT_FALSE(h.http10);
  EXPECT_EQ(h.content_length, 17);
  EXPECT_TRUE(h.has_header_length);
  EXPECT_EQ(h.header_length, "9");
  EXPECT_TRUE(h.expect_continue);
  EXPECT_FALSE(h.close);
  EXPECT_FALSE(h.chunked);

  // HTTP/1.0 closes unless it asks to keep alive; "close" wins over "keep-alive".
  ASSERT_TRUE(ParseHttpHead("GET / HTTP/1.0", &h, &e));
  EXPECT_TRUE(h.http10);
  EXPECT_TRUE(h.close);
  ASSERT_TRUE(ParseHttpHead("GET / HTTP/1.0\r\nConnection: Keep-Alive", &h, &e));
  EXPECT_FALSE(h.close);
  ASSERT_TRUE(ParseHttpHead("GET / HTTP/1.1\r\nConnection: keep-alive, close", &h, &e));
  EXPECT_TRUE(h.close);
  ASSERT_TRUE(ParseHttpHead("POST / HTTP/1.1\r\nTransfer-Encoding: chunked", &h, &e));
  EXPECT_TRUE(h.chunked);
  // Equal repeated lengths are one length.
  ASSERT_TRUE(ParseHttpHead("POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4", &h, &e));
  EXPECT_EQ(h.content_length, 4);
}

TEST(HttpHeadTest, RefusesMalformedHeadsWithTheStatusAndWhy) {
  struct Case {
    const char* head;
    int status;
    const char* why;
  };
  const Case cases[] = {
      {"", 400, "malformed request line"},
      {"GET /", 400, "malformed request line"},
      {" GET / HTTP/1.1", 400, "malformed request line"},
      {"GET  / HTTP/1.1", 400, "malformed request line"},
      {"GET / HTTP/1.1 extra", 400, "malformed request line"},
      {"GET / HTTX/1.1", 400, "malformed request line"},
      {"GET / HTTP/2.0", 505, "HTTP/2.0 not supported"},
      {"GET / HTTP/1.1\r\nNoColon", 400, "malformed header line"},
      {"GET / HTTP/1.1\r\n: empty name", 400, "malformed header line"},
      {"GET / HTTP/1.1\r\nContent-Length : 5", 400, "malformed header line"},
      {"GET / HTTP/1.1\r\nContent-Length: -1", 400, "bad Content-Length '-1'"},
      {"GET / HTTP/1.1\r\nContent-Length: 1e3", 400, "bad Content-Length"},
      {"GET / HTTP/1.1\r\nContent-Length: ", 400, "bad Content-Length"},
      {"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999", 400, "bad Content-Length"},
      {"GET / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5", 400, "bad Content-Length '5'"},
  };
  for (const Case& c : cases) {
    HttpHead h;
    HttpHeadError e;
    EXPECT_FALSE(ParseHttpHead(c.head, &h, &e)) << c.head;
    EXPECT_EQ(e.status, c.status) << c.head;
    EXPECT_NE(e.why.find(c.why), std::string::npos) << c.head << " -> " << e.why;
  }
}

}  // namespace
}  // namespace ronghe::serve
