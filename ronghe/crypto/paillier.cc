#include "ronghe/crypto/paillier.h"

#include <cstring>

#include "ronghe/base/hash.h"
#include "ronghe/base/thread_pool.h"
#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {

namespace {
// L(u) = (u - 1) / n.
mpz_class L(const mpz_class& u, const mpz_class& n) { return (u - 1) / n; }
}  // namespace

int PublicKey::bits() const { return static_cast<int>(mpz_sizeinbase(n_.get_mpz_t(), 2)); }

Result<std::shared_ptr<const PublicKey>> PublicKey::Create(const mpz_class& n, const mpz_class& hs,
                                                           int window_bits,
                                                           bool insecure_for_testing) {
  if (n <= 0 || mpz_even_p(n.get_mpz_t()))
    return InvalidArgument("paillier: n must be odd and positive");
  size_t bits = mpz_sizeinbase(n.get_mpz_t(), 2);
  if (!insecure_for_testing && bits < 2048) {
    return InvalidArgument("paillier: n has " + std::to_string(bits) +
                           " bits; at least 2048 are required");
  }
  if (bits < 256) return InvalidArgument("paillier: n is too small");
  if (window_bits < 1 || window_bits > 8)
    return InvalidArgument("paillier: window_bits must be 1..8");
  std::shared_ptr<PublicKey> k(new PublicKey());
  k->n_ = n;
  k->n2_ = n * n;
  k->hs_ = hs;
  RETURN_IF_ERROR(k->Validate(hs, "h_s"));
  Sha256Hasher h;
  std::string nb = ToBytes(n, ByteLength(n)), hb = ToBytes(hs, ByteLength(k->n2_));
  h.Update("ronghe.paillier.v1", 18);
  h.Update(nb.data(), nb.size());
  h.Update(hb.data(), hb.size());
  k->fingerprint_ = h.FinalHex().substr(0, 32);

  // Fixed-base table: entry (w, d) = h_s^(d * 2^(w * window_bits)) mod n^2.
  k->window_bits_ = window_bits;
  k->windows_ = (kRandomExponentBits + window_bits - 1) / window_bits;
  k->limbs_ = mpz_size(k->n2_.get_mpz_t());
  const size_t digits = size_t(1) << window_bits;
  k->table_.assign(static_cast<size_t>(k->windows_) * digits * k->limbs_, 0);
  mpz_class base = hs;
  for (int w = 0; w < k->windows_; ++w) {
    mpz_class e = 1;
    for (size_t d = 0; d < digits; ++d) {
      mp_limb_t* dst = &k->table_[(static_cast<size_t>(w) * digits + d) * k->limbs_];
      size_t count = 0;
      mpz_export(dst, &count, -1, sizeof(mp_limb_t), 0, 0, e.get_mpz_t());
      e = e * base % k->n2_;
    }
    base = e;  // base^(2^window_bits)
  }
  return std::shared_ptr<const PublicKey>(std::move(k));
}

mpz_class PublicKey::RandomMask() const {
  mpz_class r = RandomBits(kRandomExponentBits);
  mpz_class mask = MaskFromExponent(r);
  mpz_set_ui(r.get_mpz_t(), 0);
  return mask;
}

mpz_class PublicKey::EncryptWithExponent(const mpz_class& m, const mpz_class& r) const {
  return (1 + m * n_) % n2_ * MaskFromExponent(r) % n2_;
}

mpz_class PublicKey::MaskFromExponent(const mpz_class& r) const {
  const size_t digits = size_t(1) << window_bits_;
  std::vector<mp_limb_t> pick(limbs_);
  mpz_class acc = 1, entry;
  for (int w = 0; w < windows_; ++w) {
    mp_limb_t digit = 0;
    for (int b = 0; b < window_bits_; ++b) {
      digit |= static_cast<mp_limb_t>(mpz_tstbit(r.get_mpz_t(), w * window_bits_ + b)) << b;
    }
    // Constant-time selection: read every entry of the window, keep one by mask, so the memory
    // access pattern does not depend on the secret digit.
    std::fill(pick.begin(), pick.end(), 0);
    const mp_limb_t* row = &table_[static_cast<size_t>(w) * digits * limbs_];
    for (size_t d = 0; d < digits; ++d) {
      mp_limb_t mask = static_cast<mp_limb_t>(0) - static_cast<mp_limb_t>(d == digit);
      const mp_limb_t* src = row + d * limbs_;
      for (size_t i = 0; i < limbs_; ++i) pick[i] |= src[i] & mask;
    }
    mpz_import(entry.get_mpz_t(), limbs_, -1, sizeof(mp_limb_t), 0, 0, pick.data());
    acc = acc * entry % n2_;
  }
  std::fill(pick.begin(), pick.end(), 0);
  return acc;
}

mpz_class PublicKey::Encrypt(const mpz_class& m) const {
  // (1 + m*n) mod n^2 is g^m for g = n + 1: no exponentiation needed.
  mpz_class gm = (1 + m * n_) % n2_;
  return gm * RandomMask() % n2_;
}

Result<mpz_class> PublicKey::EncryptChecked(const mpz_class& m) const {
  if (m < 0 || m >= n_) return InvalidArgument("paillier: plaintext out of range [0, n)");
  return Encrypt(m);
}

Status PublicKey::Validate(const mpz_class& c, const std::string& what) const {
  if (c <= 0 || c >= n2_) return InvalidArgument(what + ": ciphertext out of range (0, n^2)");
  mpz_class g;
  mpz_gcd(g.get_mpz_t(), c.get_mpz_t(), n_.get_mpz_t());
  if (g != 1) return InvalidArgument(what + ": ciphertext shares a factor with n");
  return Status::OK();
}

mpz_class PublicKey::Add(const mpz_class& a, const mpz_class& b) const { return a * b % n2_; }

mpz_class PublicKey::MulScalar(const mpz_class& c, const mpz_class& k) const {
  return Pow(c, k, n2_);
}

mpz_class PublicKey::Rerandomize(const mpz_class& c) const { return c * RandomMask() % n2_; }

mpz_class MakeHs(const mpz_class& n) {
  mpz_class x = RandomUnit(n);
  mpz_class h = (n - x * x % n) % n;  // -x^2 mod n
  return Pow(h, n, n * n);
}

Result<std::unique_ptr<PrivateKey>> PrivateKey::Create(std::shared_ptr<const PublicKey> pub,
                                                       const mpz_class& p, const mpz_class& q) {
  if (p * q != pub->n()) return InvalidArgument("paillier: p * q != n");
  std::unique_ptr<PrivateKey> k(new PrivateKey());
  k->pub_ = std::move(pub);
  k->p_ = p;
  k->q_ = q;
  k->p2_ = p * p;
  k->q2_ = q * q;
  const mpz_class g = k->pub_->n() + 1;
  auto h = [&](const mpz_class& x, const mpz_class& x2) {
    mpz_class v = L(PowSecret(g % x2, x - 1, x2), x), inv;
    mpz_invert(inv.get_mpz_t(), v.get_mpz_t(), x.get_mpz_t());
    return inv;
  };
  k->hp_ = h(p, k->p2_);
  k->hq_ = h(q, k->q2_);
  mpz_invert(k->q_inv_p_.get_mpz_t(), q.get_mpz_t(), p.get_mpz_t());
  return k;
}

PrivateKey::~PrivateKey() {
  for (mpz_class* x : {&p_, &q_, &p2_, &q2_, &hp_, &hq_, &q_inv_p_}) mpz_set_ui(x->get_mpz_t(), 0);
}

Result<mpz_class> PrivateKey::Decrypt(const mpz_class& c) const {
  RETURN_IF_ERROR(pub_->Validate(c, "decrypt"));
  // Paillier 1999, sec. 7 (decryption using CRT).
  mpz_class mp = L(PowSecret(c % p2_, p_ - 1, p2_), p_) * hp_ % p_;
  mpz_class mq = L(PowSecret(c % q2_, q_ - 1, q2_), q_) * hq_ % q_;
  mpz_class u = (mp - mq) * q_inv_p_ % p_;
  if (u < 0) u += p_;
  return mpz_class(mq + u * q_);
}

std::vector<mpz_class> EncryptVector(const PublicKey& pub, const std::vector<mpz_class>& plaintexts,
                                     int threads) {
  std::vector<mpz_class> out(plaintexts.size());
  ParallelFor(
      static_cast<int64_t>(plaintexts.size()),
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = pub.Encrypt(plaintexts[i]);
      },
      threads);
  return out;
}

Result<std::vector<mpz_class>> DecryptVector(const PrivateKey& key,
                                             const std::vector<mpz_class>& ciphertexts,
                                             int threads) {
  for (size_t i = 0; i < ciphertexts.size(); ++i) {
    RETURN_IF_ERROR(key.public_key().Validate(ciphertexts[i], "ciphertext " + std::to_string(i)));
  }
  std::vector<mpz_class> out(ciphertexts.size());
  ParallelFor(
      static_cast<int64_t>(ciphertexts.size()),
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = *key.Decrypt(ciphertexts[i]);  // validated above
      },
      threads);
  return out;
}

Result<KeyPair> GenerateKeyPair(int bits, bool insecure_for_testing) {
  if (!insecure_for_testing && bits != 2048 && bits != 3072) {
    return InvalidArgument("paillier: key size must be 2048 or 3072 bits, not " +
                           std::to_string(bits));
  }
  if (bits < 512 || bits % 2) return InvalidArgument("paillier: key size must be even and >= 512");
  while (true) {
    mpz_class p = RandomPrime(bits / 2, false), q = RandomPrime(bits / 2, false);
    if (p == q) continue;
    mpz_class n = p * q;
    if (static_cast<int>(mpz_sizeinbase(n.get_mpz_t(), 2)) != bits) continue;
    ASSIGN_OR_RETURN(auto pub, PublicKey::Create(n, MakeHs(n), 6, insecure_for_testing));
    ASSIGN_OR_RETURN(auto priv, PrivateKey::Create(pub, p, q));
    return KeyPair{pub, std::move(priv)};
  }
}

}  // namespace ronghe::crypto
