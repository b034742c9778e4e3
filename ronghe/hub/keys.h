// Ed25519 keys for the model hub (OpenSSL 3): generation from OpenSSL's CSPRNG (seeded by the
// OS), private keys as PKCS#8 PEM files of mode 0600, public keys in TUF's JSON form, and key ids
// as TUF computes them (SHA-256 of the public key's canonical JSON).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ronghe/base/status.h"

namespace ronghe::hub {

struct PublicKey {
  std::string public_hex;  // the 32-byte Ed25519 public key, lowercase hex
  // {"keytype":"ed25519","scheme":"ed25519","keyval":{"public":HEX}}
  nlohmann::json ToJson() const;
  static Result<PublicKey> FromJson(const nlohmann::json& j);
  // SHA-256 (hex) of ToJson()'s canonical form: what metadata names the key by.
  std::string KeyId() const;
};

class SigningKey {
 public:
  static Result<SigningKey> Generate();
  // A PKCS#8 PEM Ed25519 private key; refused when group or others may read it.
  static Result<SigningKey> Load(const std::string& path);
  // Writes DIR/hub.key (0600, refusing to overwrite) and DIR/hub.pub (the public key's JSON).
  Status WritePair(const std::string& dir) const;
  Status WritePrivate(const std::string& path) const;

  const PublicKey& public_key() const { return public_; }
  std::string KeyId() const { return public_.KeyId(); }
  // The 64-byte signature over `message`, hex.
  Result<std::string> Sign(std::string_view message) const;

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

 private:
  SigningKey();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  PublicKey public_;
};

// Whether `signature_hex` is `key`'s Ed25519 signature over `message`. Malformed hex or key: false.
bool VerifySignature(const PublicKey& key, std::string_view message,
                     std::string_view signature_hex);

// A public key from a file: a hub.pub JSON file, or a private key file (its public half).
Result<PublicKey> LoadPublicKey(const std::string& path);

// Canonical JSON (what is signed and hashed): keys sorted, no whitespace, UTF-8.
std::string Canonical(const nlohmann::json& j);

Result<std::string> HexDecode(std::string_view hex);

}  // namespace ronghe::hub
