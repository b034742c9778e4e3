#include "ronghe/crypto/ring.h"

#include <cmath>

namespace ronghe::crypto {

namespace {

using u128 = unsigned __int128;
constexpr uint64_t P = NegacyclicRing::kPrime;

uint64_t MulMod(uint64_t a, uint64_t b) { return static_cast<uint64_t>(u128(a) * b % P); }

uint64_t PowMod(uint64_t b, uint64_t e) {
  uint64_t r = 1;
  for (; e; e >>= 1, b = MulMod(b, b))
    if (e & 1) r = MulMod(r, b);
  return r;
}

// floor(w * 2^64 / P): with it, a * w mod P needs no division (Shoup).
uint64_t Shoup(uint64_t w) { return static_cast<uint64_t>((u128(w) << 64) / P); }

// a * w mod P for a < 2^62 (lazy: result in [0, 2P)).
inline uint64_t MulShoupLazy(uint64_t a, uint64_t w, uint64_t w_shoup) {
  uint64_t q = static_cast<uint64_t>((u128(a) * w_shoup) >> 64);
  return a * w - q * P;
}
inline uint64_t Reduce2P(uint64_t x) { return x >= P ? x - P : x; }

int BitReverse(int x, int bits) {
  int r = 0;
  for (int i = 0; i < bits; ++i) r |= ((x >> i) & 1) << (bits - 1 - i);
  return r;
}

}  // namespace

Result<NegacyclicRing> NegacyclicRing::Create(int n, int log_q, int64_t max_secret) {
  if (n < 2 || n > 4096 || (n & (n - 1)) != 0)
    return InvalidArgument("ring: N must be a power of two between 2 and 4096, not " +
                           std::to_string(n));
  if (log_q < 1 || log_q > 63)
    return InvalidArgument("ring: log q must be 1..63, not " + std::to_string(log_q));
  if (max_secret < 1) return InvalidArgument("ring: the secret bound must be >= 1");
  // Every coefficient of the integer product is a sum of N terms below q * max|s|.
  const double bound = std::log2(static_cast<double>(n)) + log_q + std::log2(max_secret);
  if (bound >= 61) {
    return InvalidArgument("ring: N = " + std::to_string(n) + ", log q = " + std::to_string(log_q) +
                           " and |s| <= " + std::to_string(max_secret) + " give products up to 2^" +
                           std::to_string(bound) +
                           ", beyond the exact range 2^61 of the 62-bit NTT prime");
  }
  NegacyclicRing r;
  r.n_ = n;
  r.log_q_ = log_q;
  r.mask_ = log_q == 64 ? ~0ull : (1ull << log_q) - 1;
  // A primitive 2N-th root of unity: g^((P-1)/2N) for a g whose result has order exactly 2N
  // (psi^N = -1).
  uint64_t psi = 0;
  for (uint64_t g = 2; g < 1000 && !psi; ++g) {
    uint64_t c = PowMod(g, (P - 1) / (2 * static_cast<uint64_t>(n)));
    if (PowMod(c, n) == P - 1) psi = c;
  }
  if (!psi) return Internal("ring: no 2N-th root of unity found");
  const uint64_t psi_inv = PowMod(psi, P - 2);
  int bits = 0;
  while ((1 << bits) < n) ++bits;
  r.psi_.resize(n);
  r.psi_shoup_.resize(n);
  r.psi_inv_.resize(n);
  r.psi_inv_shoup_.resize(n);
  for (int i = 0; i < n; ++i) {
    const int br = BitReverse(i, bits);
    r.psi_[i] = PowMod(psi, br);
    r.psi_inv_[i] = PowMod(psi_inv, br);
    r.psi_shoup_[i] = Shoup(r.psi_[i]);
    r.psi_inv_shoup_[i] = Shoup(r.psi_inv_[i]);
  }
  r.n_inv_ = PowMod(n, P - 2);
  r.n_inv_shoup_ = Shoup(r.n_inv_);
  return r;
}

// Cooley-Tukey with psi folded in (Longa-Naehrig 2016): natural order in, bit-reversed out.
void NegacyclicRing::Forward(uint64_t* x) const {
  for (int m = 1, t = n_ / 2; m < n_; m *= 2, t /= 2) {
    for (int i = 0; i < m; ++i) {
      const uint64_t w = psi_[m + i], ws = psi_shoup_[m + i];
      uint64_t* lo = x + 2 * i * t;
      uint64_t* hi = lo + t;
      for (int j = 0; j < t; ++j) {
        const uint64_t u = lo[j];
        const uint64_t v = Reduce2P(MulShoupLazy(hi[j], w, ws));
        lo[j] = Reduce2P(u + v);
        hi[j] = Reduce2P(u + P - v);
      }
    }
  }
}

// Gentleman-Sande, the inverse of Forward: bit-reversed in, natural order out, times 1/N.
void NegacyclicRing::Inverse(uint64_t* x) const {
  for (int m = n_, t = 1; m > 1; m /= 2, t *= 2) {
    const int h = m / 2;
    for (int i = 0; i < h; ++i) {
      const uint64_t w = psi_inv_[h + i], ws = psi_inv_shoup_[h + i];
      uint64_t* lo = x + 2 * i * t;
      uint64_t* hi = lo + t;
      for (int j = 0; j < t; ++j) {
        const uint64_t u = lo[j], v = hi[j];
        lo[j] = Reduce2P(u + v);
        hi[j] = Reduce2P(MulShoupLazy(u + P - v, w, ws));
      }
    }
  }
  for (int j = 0; j < n_; ++j) x[j] = Reduce2P(MulShoupLazy(x[j], n_inv_, n_inv_shoup_));
}

NegacyclicRing::Secret NegacyclicRing::TransformSecret(const std::vector<int64_t>& s) const {
  Secret out;
  out.hat.resize(n_);
  out.hat_shoup.resize(n_);
  for (int i = 0; i < n_; ++i) {
    out.hat[i] = s[i] >= 0 ? static_cast<uint64_t>(s[i]) : P - static_cast<uint64_t>(-s[i]);
  }
  Forward(out.hat.data());
  for (int i = 0; i < n_; ++i) out.hat_shoup[i] = Shoup(out.hat[i]);
  return out;
}

void NegacyclicRing::MultiplyBySecret(const uint64_t* a, const Secret& s, uint64_t* out,
                                      uint64_t* scratch) const {
  for (int i = 0; i < n_; ++i) scratch[i] = a[i] & mask_;  // < q < P
  Forward(scratch);
  for (int i = 0; i < n_; ++i)
    scratch[i] = Reduce2P(MulShoupLazy(scratch[i], s.hat[i], s.hat_shoup[i]));
  Inverse(scratch);
  // Back from Z_P to the integers (|c| < P/2), then mod q.
  for (int i = 0; i < n_; ++i) {
    const uint64_t c = scratch[i];
    const uint64_t v = c > P / 2 ? static_cast<uint64_t>(-(int64_t)(P - c)) : c;
    out[i] = v & mask_;
  }
}

std::vector<uint64_t> NegacyclicRing::SchoolbookProduct(const std::vector<uint64_t>& a,
                                                        const std::vector<int64_t>& s, int log_q) {
  const size_t n = a.size();
  const uint64_t mask = (1ull << log_q) - 1;
  std::vector<uint64_t> out(n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const uint64_t term = a[i] * static_cast<uint64_t>(s[j]);  // wraps mod 2^64, fine mod q
      const size_t k = i + j;
      if (k < n) {
        out[k] += term;
      } else {
        out[k - n] -= term;  // X^N = -1
      }
    }
  }
  for (auto& c : out) c &= mask;
  return out;
}

}  // namespace ronghe::crypto
