// libFuzzer target: the key file parsers (public.json, party-<i>.json). Any input must give a
// Status, never a crash, hang or sanitizer report. Built by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ronghe/crypto/keyfile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)ronghe::crypto::ParsePublicKey(text, "fuzz");
  (void)ronghe::crypto::ParseShare(text, "fuzz");
  return 0;
}
