#include "ronghe/crypto/bigint.h"

#include <openssl/bn.h>
#include <openssl/rand.h>

#include <memory>
#include <stdexcept>

namespace ronghe::crypto {

namespace {
void Fill(unsigned char* buf, size_t n) {
  // RAND_bytes fails only when the OS CSPRNG cannot be read; continuing would mean weak keys.
  if (RAND_bytes(buf, static_cast<int>(n)) != 1) {
    throw std::runtime_error("OS random number generator unavailable (RAND_bytes failed)");
  }
}
}  // namespace

mpz_class RandomBits(int bits) {
  size_t bytes = (static_cast<size_t>(bits) + 7) / 8;
  std::string buf(bytes, '\0');
  Fill(reinterpret_cast<unsigned char*>(buf.data()), bytes);
  mpz_class x;
  mpz_import(x.get_mpz_t(), bytes, 1, 1, 1, 0, buf.data());
  std::fill(buf.begin(), buf.end(), '\0');
  int extra = static_cast<int>(bytes * 8) - bits;
  if (extra > 0) mpz_fdiv_r_2exp(x.get_mpz_t(), x.get_mpz_t(), bits);
  return x;
}

mpz_class RandomBelow(const mpz_class& bound) {
  int bits = static_cast<int>(mpz_sizeinbase(bound.get_mpz_t(), 2));
  while (true) {
    mpz_class x = RandomBits(bits);
    if (x < bound) return x;
  }
}

mpz_class RandomUnit(const mpz_class& n) {
  while (true) {
    mpz_class x = RandomBelow(n);
    if (x == 0) continue;
    mpz_class g;
    mpz_gcd(g.get_mpz_t(), x.get_mpz_t(), n.get_mpz_t());
    if (g == 1) return x;
  }
}

mpz_class RandomPrime(int bits, bool safe) {
  std::unique_ptr<BIGNUM, void (*)(BIGNUM*)> p(BN_new(), BN_clear_free);
  if (!p || BN_generate_prime_ex(p.get(), bits, safe ? 1 : 0, nullptr, nullptr, nullptr) != 1) {
    throw std::runtime_error("prime generation failed");
  }
  std::string buf(static_cast<size_t>(BN_num_bytes(p.get())), '\0');
  BN_bn2bin(p.get(), reinterpret_cast<unsigned char*>(buf.data()));
  mpz_class x;
  mpz_import(x.get_mpz_t(), buf.size(), 1, 1, 1, 0, buf.data());
  std::fill(buf.begin(), buf.end(), '\0');
  return x;
}

std::string ToHex(const mpz_class& x) { return x.get_str(16); }

Result<mpz_class> FromHex(std::string_view hex, const std::string& what) {
  if (hex.empty()) return DataLoss(what + ": empty hex number");
  if (hex.size() > 8192) return DataLoss(what + ": hex number too long");
  for (char c : hex) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!ok) return DataLoss(what + ": not a hex number");
  }
  mpz_class x;
  if (x.set_str(std::string(hex), 16) != 0) return DataLoss(what + ": not a hex number");
  return x;
}

size_t ByteLength(const mpz_class& x) { return (mpz_sizeinbase(x.get_mpz_t(), 2) + 7) / 8; }

std::string ToBytes(const mpz_class& x, size_t len) {
  std::string out(len, '\0');
  size_t count = 0;
  std::string tmp(ByteLength(x) + 1, '\0');
  mpz_export(tmp.data(), &count, 1, 1, 1, 0, x.get_mpz_t());
  if (count > len) count = len;  // caller guarantees fit; never write past the buffer
  std::copy(tmp.begin(), tmp.begin() + count, out.end() - count);
  return out;
}

namespace {
using Bn = std::unique_ptr<BIGNUM, void (*)(BIGNUM*)>;

Bn ToBn(const mpz_class& x) {
  std::string bytes = ToBytes(x, ByteLength(x));
  Bn b(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                 static_cast<int>(bytes.size()), nullptr),
       BN_clear_free);
  std::fill(bytes.begin(), bytes.end(), '\0');
  return b;
}

mpz_class FromBn(const BIGNUM* b) {
  std::string bytes(static_cast<size_t>(BN_num_bytes(b)), '\0');
  BN_bn2bin(b, reinterpret_cast<unsigned char*>(bytes.data()));
  mpz_class x;
  mpz_import(x.get_mpz_t(), bytes.size(), 1, 1, 1, 0, bytes.data());
  std::fill(bytes.begin(), bytes.end(), '\0');
  return x;
}
}  // namespace

mpz_class PowSecret(const mpz_class& base, const mpz_class& exp, const mpz_class& mod) {
  if (exp == 0) return mpz_class(1) % mod;
  // OpenSSL's constant-time Montgomery ladder with fixed windows: measured here 27% faster than
  // GMP's mpz_powm_sec at a 4096-bit modulus and 15% faster at 2048 bits (docs/benchmarks.md).
  thread_local std::unique_ptr<BN_CTX, void (*)(BN_CTX*)> ctx(BN_CTX_secure_new(), BN_CTX_free);
  mpz_class b = base % mod;
  if (b < 0) b += mod;
  Bn bb = ToBn(b), be = ToBn(exp), bm = ToBn(mod);
  Bn br(BN_new(), BN_clear_free);
  BN_set_flags(be.get(), BN_FLG_CONSTTIME);
  if (!ctx || !bb || !be || !bm || !br ||
      BN_mod_exp_mont_consttime(br.get(), bb.get(), be.get(), bm.get(), ctx.get(), nullptr) != 1) {
    // Falls back to GMP's constant-time exponentiation rather than failing a decryption.
    mpz_class r;
    mpz_powm_sec(r.get_mpz_t(), base.get_mpz_t(), exp.get_mpz_t(), mod.get_mpz_t());
    return r;
  }
  return FromBn(br.get());
}

mpz_class Pow(const mpz_class& base, const mpz_class& exp, const mpz_class& mod) {
  mpz_class r;
  mpz_powm(r.get_mpz_t(), base.get_mpz_t(), exp.get_mpz_t(), mod.get_mpz_t());
  return r;
}

}  // namespace ronghe::crypto
