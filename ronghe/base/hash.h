// SHA-256 over OpenSSL's EVP interface.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "ronghe/base/status.h"

namespace ronghe {

// 32 raw bytes.
std::string Sha256(std::string_view data);
std::string Sha256Hex(std::string_view data);
// Streams the file; never loads it whole.
Result<std::string> Sha256FileHex(const std::string& path);
std::string HexEncode(std::string_view bytes);

// Incremental hashing for data that arrives in pieces.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void Update(const void* data, size_t n);
  std::string FinalHex();
  std::string FinalRaw();

 private:
  void* ctx_;  // EVP_MD_CTX*, owned
};

}  // namespace ronghe
