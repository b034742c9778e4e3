// libFuzzer target: the head of an HTTP/1.x request (request line and headers) as the event
// front end parses it. A head either parses, with every view inside the input and a
// non-negative length, or is refused with 400 or 505 and a reason; nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ronghe/serve/event_http.h"

namespace {

bool Inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view head(reinterpret_cast<const char*>(data), size);
  ronghe::serve::HttpHead h;
  ronghe::serve::HttpHeadError err;
  if (ronghe::serve::ParseHttpHead(head, &h, &err)) {
    if (h.method.empty() || h.target.empty() || h.content_length < 0) std::abort();
    if (!Inside(h.method, head) || !Inside(h.target, head) || !Inside(h.header_length, head)) {
      std::abort();
    }
  } else if ((err.status != 400 && err.status != 505) || err.why.empty()) {
    std::abort();
  }
  return 0;
}
