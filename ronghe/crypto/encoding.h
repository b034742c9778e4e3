// The bytes of Paillier values on the wire and in files, in one place: ciphertexts and
// partial-decryption shares at the fixed width of n^2 (so a message's size says how many values
// it carries), proof numbers at their minimal length. Big-endian throughout.
#pragma once

#include <gmpxx.h>

#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/paillier.h"
#include "ronghe/crypto/threshold.h"

namespace ronghe::crypto {

// Bytes per ciphertext (and per partial-decryption share) under `pk`: those of n^2.
size_t CiphertextWidth(const PublicKey& pk);

// `width` bytes per value, concatenated. REQUIRES: every value is >= 0 and fits in `width` bytes.
std::string EncodeFixedWidth(const std::vector<mpz_class>& values, size_t width);
// The inverse; `what` names the payload in errors ("party bank-west: upload").
Result<std::vector<mpz_class>> DecodeFixedWidth(const std::string& bytes, size_t width,
                                                size_t expected_count, const std::string& what);

// A proof's two numbers at their minimal length ("" for zero).
struct EncodedProof {
  std::string e, z;
};
EncodedProof EncodeProof(const EqualityProof& proof);
EqualityProof DecodeProof(const std::string& e, const std::string& z);

}  // namespace ronghe::crypto
