#include "ronghe/crypto/encoding.h"

#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {

namespace {

std::string Minimal(const mpz_class& x) {
  return x == 0 ? std::string() : ToBytes(x, ByteLength(x));
}

mpz_class FromBigEndian(const std::string& bytes) {
  mpz_class x;
  if (!bytes.empty()) mpz_import(x.get_mpz_t(), bytes.size(), 1, 1, 1, 0, bytes.data());
  return x;
}

}  // namespace

size_t CiphertextWidth(const PublicKey& pk) { return ByteLength(pk.n2()); }

std::string EncodeFixedWidth(const std::vector<mpz_class>& values, size_t width) {
  std::string out(values.size() * width, '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    // Export to the right end of the slot: leading zero bytes stay zero.
    const size_t len = values[i] == 0 ? 0 : ByteLength(values[i]);
    size_t n = 0;
    if (len > 0 && len <= width)
      mpz_export(&out[i * width + (width - len)], &n, 1, 1, 1, 0, values[i].get_mpz_t());
  }
  return out;
}

Result<std::vector<mpz_class>> DecodeFixedWidth(const std::string& bytes, size_t width,
                                                size_t expected_count, const std::string& what) {
  if (width == 0 || width > 4096) {
    return InvalidArgument(what + ": ciphertext width " + std::to_string(width) + " is invalid");
  }
  if (bytes.size() != expected_count * width) {
    return InvalidArgument(what + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                           std::to_string(expected_count) + " values of " + std::to_string(width) +
                           " bytes");
  }
  std::vector<mpz_class> out(expected_count);
  for (size_t i = 0; i < expected_count; ++i) {
    mpz_import(out[i].get_mpz_t(), width, 1, 1, 1, 0, bytes.data() + i * width);
  }
  return out;
}

EncodedProof EncodeProof(const EqualityProof& proof) {
  return {Minimal(proof.e), Minimal(proof.z)};
}

EqualityProof DecodeProof(const std::string& e, const std::string& z) {
  return {FromBigEndian(e), FromBigEndian(z)};
}

}  // namespace ronghe::crypto
