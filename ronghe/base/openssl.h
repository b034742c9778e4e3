// Small helpers for OpenSSL's C API: owning pointers and the error queue as text.
#pragma once

#include <openssl/err.h>

#include <memory>
#include <string>

namespace ronghe {

template <typename T, void (*Free)(T*)>
struct OpenSslDeleter {
  void operator()(T* p) const { Free(p); }
};
// e.g. OpenSslPtr<X509, X509_free>.
template <typename T, void (*Free)(T*)>
using OpenSslPtr = std::unique_ptr<T, OpenSslDeleter<T, Free>>;

// "what: <the oldest queued OpenSSL error>" (just "what" when the queue is empty); clears the
// queue so a later failure does not report this one.
inline std::string OpenSslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return what + (e ? std::string(": ") + buf : "");
}

}  // namespace ronghe
