// Key files for threshold Paillier (docs/formats/keys.md): public.json and party-<i>.json, JSON
// with big integers in hex. Secret files are written 0600 in a 0700 folder. Loading checks the
// format and version, every number, the stored fingerprint, and for a share that it matches its
// verification key (a share of another key is refused).
#pragma once

#include <memory>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/crypto/threshold.h"

namespace ronghe::crypto {

constexpr int kKeyFileVersion = 1;

std::string PublicKeyJson(const ThresholdPublicKey& pub);
std::string ShareJson(const ThresholdPublicKey& pub, const KeyShare& share);

// Writes DIR/public.json and DIR/party-<i>.json. Refuses to overwrite existing key files.
Status WriteThresholdKeys(const std::string& dir, const ThresholdKeys& keys);

Result<std::shared_ptr<const ThresholdPublicKey>> ParsePublicKey(const std::string& text,
                                                                 const std::string& source);
struct LoadedShare {
  std::shared_ptr<const ThresholdPublicKey> public_key;
  KeyShare share;
};
Result<LoadedShare> ParseShare(const std::string& text, const std::string& source);

Result<std::shared_ptr<const ThresholdPublicKey>> LoadPublicKey(const std::string& path);
// With `expected`, the share must belong to that public key.
Result<LoadedShare> LoadShare(const std::string& path,
                              const ThresholdPublicKey* expected = nullptr);

}  // namespace ronghe::crypto
