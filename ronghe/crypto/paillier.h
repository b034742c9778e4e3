// Paillier encryption with g = n + 1 (Paillier 1999), with the Damgard-Jurik-Nielsen short-
// exponent randomiser (DJN 2010, sec. 4): c = (1 + m*n) * h_s^r mod n^2, where h_s = h^n mod n^2
// is public and r has kRandomExponentBits bits. The same ciphertexts decrypt with textbook
// Paillier (they are (1 + m*n) * (h^r)^n), so other implementations interoperate.
//
// Security note: the short exponent relies on the DJN assumption (h^r with short r is
// indistinguishable from a random n-th power) in addition to DCR; see docs/crypto.md.
#pragma once

#include <gmpxx.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::crypto {

// 2 x 128-bit security, above 2 x 112 (2048-bit n) and 2 x 128 (3072-bit n).
constexpr int kRandomExponentBits = 256;

class PublicKey {
 public:
  // Validates n (odd, composite-sized, > 2^1000 unless `insecure_for_testing`) and h_s
  // (a unit mod n^2), and builds the fixed-base table. `window_bits` trades memory for speed.
  static Result<std::shared_ptr<const PublicKey>> Create(const mpz_class& n, const mpz_class& hs,
                                                         int window_bits = 6,
                                                         bool insecure_for_testing = false);

  const mpz_class& n() const { return n_; }
  const mpz_class& n2() const { return n2_; }
  const mpz_class& hs() const { return hs_; }
  int bits() const;
  // First 16 bytes of SHA-256 over n and h_s, in hex: names the key in files and logs.
  const std::string& fingerprint() const { return fingerprint_; }

  // REQUIRES: 0 <= m < n.
  mpz_class Encrypt(const mpz_class& m) const;
  // Checked form for plaintexts from callers: m must lie in [0, n).
  Result<mpz_class> EncryptChecked(const mpz_class& m) const;
  // h_s^r with a fresh random r, via the fixed-base table with constant-time lookups.
  mpz_class RandomMask() const;
  // Deterministic encryption with the given exponent r (< 2^kRandomExponentBits). For
  // known-answer tests only: real encryption must use a fresh secret r (Encrypt).
  mpz_class EncryptWithExponent(const mpz_class& m, const mpz_class& r) const;

  // Every ciphertext from outside goes through this: 0 < c < n^2 and gcd(c, n) = 1.
  Status Validate(const mpz_class& c, const std::string& what) const;

  mpz_class Add(const mpz_class& a, const mpz_class& b) const;
  // c^k: encrypts k * m. Negative k allowed.
  mpz_class MulScalar(const mpz_class& c, const mpz_class& k) const;
  mpz_class Rerandomize(const mpz_class& c) const;

 private:
  PublicKey() = default;
  mpz_class MaskFromExponent(const mpz_class& r) const;
  mpz_class n_, n2_, hs_;
  std::string fingerprint_;
  int window_bits_ = 6;
  int windows_ = 0;
  size_t limbs_ = 0;              // limbs of n^2
  std::vector<mp_limb_t> table_;  // [window][digit][limb], h_s^(digit * 2^(window*w))
};

// The factorisation, for single-key Paillier. Threshold keys never materialise this: the dealer
// discards p and q (threshold.h).
class PrivateKey {
 public:
  static Result<std::unique_ptr<PrivateKey>> Create(std::shared_ptr<const PublicKey> pub,
                                                    const mpz_class& p, const mpz_class& q);
  ~PrivateKey();
  // CRT decryption with exponents p-1 and q-1 (constant-time exponentiation). Validates c.
  Result<mpz_class> Decrypt(const mpz_class& c) const;
  const PublicKey& public_key() const { return *pub_; }

 private:
  PrivateKey() = default;
  std::shared_ptr<const PublicKey> pub_;
  mpz_class p_, q_, p2_, q2_, hp_, hq_, q_inv_p_;
};

// Vector forms on the thread pool (threads: 0 = every core).
// REQUIRES: each plaintext in [0, n).
std::vector<mpz_class> EncryptVector(const PublicKey& pub, const std::vector<mpz_class>& plaintexts,
                                     int threads = 0);
// Validates every ciphertext first; the error names the first bad one by position.
Result<std::vector<mpz_class>> DecryptVector(const PrivateKey& key,
                                             const std::vector<mpz_class>& ciphertexts,
                                             int threads = 0);

struct KeyPair {
  std::shared_ptr<const PublicKey> public_key;
  std::unique_ptr<PrivateKey> private_key;
};

// bits: 2048 or 3072 (any even size >= 512 with `insecure_for_testing`).
Result<KeyPair> GenerateKeyPair(int bits, bool insecure_for_testing = false);

// h_s for DJN from n: h = -x^2 mod n for a random unit x, h_s = h^n mod n^2.
mpz_class MakeHs(const mpz_class& n);

}  // namespace ronghe::crypto
