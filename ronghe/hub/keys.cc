#include "ronghe/hub/keys.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/base/openssl.h"

namespace ronghe::hub {

using nlohmann::json;

namespace {

using PkeyPtr = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;
using MdCtxPtr = OpenSslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using BioPtr = OpenSslPtr<BIO, BIO_free_all>;

Result<PublicKey> PublicOf(EVP_PKEY* pkey) {
  unsigned char raw[32];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof raw) {
    return Internal(OpenSslError("Ed25519: cannot read the public key"));
  }
  PublicKey p;
  p.public_hex = HexEncode(std::string_view(reinterpret_cast<const char*>(raw), len));
  return p;
}

}  // namespace

std::string Canonical(const json& j) {
  // nlohmann's objects are sorted maps, and dump() without indent writes no whitespace.
  return j.dump(-1, ' ', false, json::error_handler_t::strict);
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2) return InvalidArgument("odd-length hex");
  std::string out(hex.size() / 2, '\0');
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgument("not hex");
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

json PublicKey::ToJson() const {
  return {{"keytype", "ed25519"}, {"scheme", "ed25519"}, {"keyval", {{"public", public_hex}}}};
}

Result<PublicKey> PublicKey::FromJson(const json& j) {
  if (!j.is_object() || j.value("keytype", "") != "ed25519" || j.value("scheme", "") != "ed25519" ||
      !j.contains("keyval") || !j["keyval"].is_object() || !j["keyval"].contains("public") ||
      !j["keyval"]["public"].is_string()) {
    return InvalidArgument("not an ed25519 public key object");
  }
  PublicKey p;
  p.public_hex = j["keyval"]["public"].get<std::string>();
  auto raw = HexDecode(p.public_hex);
  if (!raw.ok() || raw->size() != 32) {
    return InvalidArgument("ed25519 public key: want 64 hex digits");
  }
  return p;
}

std::string PublicKey::KeyId() const { return Sha256Hex(Canonical(ToJson())); }

struct SigningKey::Impl {
  PkeyPtr pkey;
};

SigningKey::SigningKey() : impl_(std::make_unique<Impl>()) {}
SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

Result<SigningKey> SigningKey::Generate() {
  SigningKey k;
  k.impl_->pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!k.impl_->pkey) return Internal(OpenSslError("Ed25519 key generation failed"));
  ASSIGN_OR_RETURN(k.public_, PublicOf(k.impl_->pkey.get()));
  return k;
}

Result<SigningKey> SigningKey::Load(const std::string& path) {
  RETURN_IF_ERROR(CheckSecretFileMode(path, "hub signing key"));
  ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  SigningKey k;
  k.impl_->pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!k.impl_->pkey || EVP_PKEY_get_id(k.impl_->pkey.get()) != EVP_PKEY_ED25519) {
    ERR_clear_error();
    return InvalidArgument(path + ": not an unencrypted Ed25519 private key (PKCS#8 PEM)");
  }
  ASSIGN_OR_RETURN(k.public_, PublicOf(k.impl_->pkey.get()));
  return k;
}

Status SigningKey::WritePrivate(const std::string& path) const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), impl_->pkey.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return Internal(OpenSslError("Ed25519: cannot encode the private key"));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(n));
  Status st = WriteFileAtomic(path, pem, 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  return st;
}

Status SigningKey::WritePair(const std::string& dir) const {
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  const std::string key = dir + "/hub.key", pub = dir + "/hub.pub";
  if (FileExists(key)) return AlreadyExists(key + ": exists; refusing to overwrite a key");
  RETURN_IF_ERROR(WritePrivate(key));
  json p = public_.ToJson();
  p["keyid"] = KeyId();
  return WriteFileAtomic(pub, p.dump(2) + "\n", 0644);
}

Result<std::string> SigningKey::Sign(std::string_view message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  unsigned char sig[64];
  size_t len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    return Internal(OpenSslError("Ed25519 signing failed"));
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(sig), len));
}

bool VerifySignature(const PublicKey& key, std::string_view message,
                     std::string_view signature_hex) {
  auto raw = HexDecode(key.public_hex);
  auto sig = HexDecode(signature_hex);
  if (!raw.ok() || raw->size() != 32 || !sig.ok() || sig->size() != 64) return false;
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw->data()), 32));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok =
      pkey && ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()), 64,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  ERR_clear_error();
  return ok;
}

Result<PublicKey> LoadPublicKey(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  if (text.find("PRIVATE KEY") != std::string::npos) {
    ASSIGN_OR_RETURN(SigningKey k, SigningKey::Load(path));
    return k.public_key();
  }
  json j = json::parse(text, nullptr, false);
  auto p = PublicKey::FromJson(j);
  if (!p.ok()) return InvalidArgument(path + ": " + p.status().message());
  return p;
}

}  // namespace ronghe::hub
