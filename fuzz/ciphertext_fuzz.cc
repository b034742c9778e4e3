// libFuzzer target: a ciphertext as it arrives from outside (hex text), parsed and validated
// against a fixed 1024-bit test key, then partially decrypted and verified when valid.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ronghe/crypto/bigint.h"
#include "ronghe/crypto/threshold.h"

namespace {
const ronghe::crypto::ThresholdKeys& Keys() {
  static auto* k = [] {
    ronghe::crypto::DealerOptions o;
    o.bits = 1024;
    o.parties = 3;
    o.threshold = 2;
    o.insecure_for_testing = true;
    return new ronghe::crypto::ThresholdKeys(
        std::move(ronghe::crypto::DealThresholdKeys(o)).value());
  }();
  return *k;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& k = Keys();
  auto c =
      ronghe::crypto::FromHex(std::string(reinterpret_cast<const char*>(data), size), "ciphertext");
  if (!c.ok()) return 0;
  if (!k.public_key->paillier().Validate(*c, "ciphertext").ok()) return 0;
  auto p = ronghe::crypto::PartialDecrypt(*k.public_key, k.shares[0], {*c}, 1);
  if (p.ok() && !ronghe::crypto::VerifyPartial(*k.public_key, {*c}, *p, 1).ok()) __builtin_trap();
  return 0;
}
