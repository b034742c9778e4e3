// Arithmetic in R_q = Z_q[X] / (X^N + 1), q = 2^log_q, for lattice-masked secure aggregation
// (issue 14, docs/crypto.md): a public uniform polynomial `a` times a small secret `s`, exactly.
//
// q is a power of two, so R_q has no NTT of its own. The product is computed exactly over the
// integers instead, through a negacyclic NTT modulo the 62-bit prime P = 4611686018427322369
// (P = 1 mod 2^13, so N up to 4096), and then reduced mod q: exact while every coefficient of the
// integer product stays below P/2, i.e. N * q * max|s| < 2^61 (checked by Create). Twiddles use
// Shoup's precomputed quotients, so a butterfly is two multiplications and no division.
#pragma once

#include <cstdint>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::crypto {

class NegacyclicRing {
 public:
  static constexpr uint64_t kPrime = 4611686018427322369ull;  // 2^62 - 2^15 * 3 + 1, = 1 mod 2^13

  // n: a power of two, 2..4096. log_q: 1..63. max_secret: the bound on |s| the caller guarantees.
  // InvalidArgument, naming the numbers, when the product could exceed P/2.
  static Result<NegacyclicRing> Create(int n, int log_q, int64_t max_secret);

  int n() const { return n_; }
  int log_q() const { return log_q_; }
  uint64_t mask() const { return mask_; }  // q - 1

  // A secret's transform (and Shoup quotients), computed once and reused for every block.
  struct Secret {
    std::vector<uint64_t> hat, hat_shoup;
  };
  // REQUIRES: s.size() == n(), |s_i| <= max_secret.
  Secret TransformSecret(const std::vector<int64_t>& s) const;
  // out = a * s mod (X^N + 1, q); a's coefficients are taken mod q. `scratch` holds n values.
  // No allocation.
  void MultiplyBySecret(const uint64_t* a, const Secret& s, uint64_t* out, uint64_t* scratch) const;

  // The reference: schoolbook negacyclic product mod q (O(N^2); tests).
  static std::vector<uint64_t> SchoolbookProduct(const std::vector<uint64_t>& a,
                                                 const std::vector<int64_t>& s, int log_q);

 private:
  void Forward(uint64_t* x) const;
  void Inverse(uint64_t* x) const;

  int n_ = 0, log_q_ = 0;
  uint64_t mask_ = 0;
  std::vector<uint64_t> psi_, psi_shoup_;          // psi^bitrev(i), forward
  std::vector<uint64_t> psi_inv_, psi_inv_shoup_;  // psi^-bitrev(i), inverse
  uint64_t n_inv_ = 0, n_inv_shoup_ = 0;
};

}  // namespace ronghe::crypto
