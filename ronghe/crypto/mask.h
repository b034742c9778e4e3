// Lattice masks for secure aggregation (issue 14; docs/crypto.md): a quantised update x (signed
// integers, |x| <= qmax) is sealed block by block as
//
//   y_j = Delta * x_j + a_j * s + e_j   in R_q = Z_q[X]/(X^N + 1),  q = 2^log_q,
//
// with a_j public (AES-128-CTR from a seed no single party chooses), s and e_j small and fresh
// from the OS CSPRNG for every seal, and the message in the high bits (Delta = q / t). Masks are
// key-additive: the sum of k parties' y, minus a_j times the sum of their s, is Delta * sum(x) plus
// the summed errors, which rounding removes exactly while |sum(e)| < Delta / 2 and
// |sum(x)| < t / 2. Create() refuses parameters for which that cannot hold for max_summands.
//
// Only the small secrets need the threshold scheme (N coefficients, whatever the model size); the
// y's are about as large as the plaintext update.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/ring.h"

namespace ronghe::crypto {

struct MaskOptions {
  int n = 2048;          // Default: 2048. Ring dimension (power of two, <= 4096).
  int log_q = 32;        // Default: 32. q = 2^32; <= 54 for 128-bit security at N = 2048 (HE
                         // standard, ternary/Gaussian secrets); Create enforces the table.
  int value_bits = 16;   // Default: 16. Quantised width per value, sign included (as packing).
  int max_summands = 5;  // Default: 5. Parties whose masked updates may be summed.
  int eta = 40;          // Default: 40 (1..64). Secrets and errors: centred binomial, |v| <= eta,
                         // variance eta / 2 (sigma 4.47, as Willow's 4.5).
};

// 32 bytes that fix the public polynomials of one round attempt (e.g. SHA-256 of consortium,
// round and the coordinator's nonce).
using MaskSeed = std::array<uint8_t, 32>;

class Masker {
 public:
  static Result<Masker> Create(const MaskOptions& options);

  const MaskOptions& options() const { return o_; }
  int64_t Blocks(int64_t length) const { return (length + o_.n - 1) / o_.n; }
  int64_t qmax() const { return (int64_t{1} << (o_.value_bits - 1)) - 1; }
  int log_delta() const { return log_delta_; }

  // a_j: N coefficients uniform mod q, from AES-128-CTR keyed by the seed, counter = block.
  void ExpandPublic(const MaskSeed& seed, int64_t block, uint64_t* out) const;

  struct Sealed {
    std::vector<uint64_t> y;  // Blocks(length) * N coefficients mod q
    std::vector<int64_t> s;   // the secret (N coefficients, |s_i| <= eta): encrypt, then erase
  };
  // REQUIRES: |x[i]| <= qmax(). Fresh s and e from the OS CSPRNG on every call; Internal when the
  // generator returns a secret this process drew before (a broken or forced generator: a reused
  // key would let the coordinator unmask single updates).
  Result<Sealed> Seal(const int32_t* x, int64_t length, const MaskSeed& seed) const;

  // The exact sum of `summands` sealed vectors from the sum of their y (mod q) and of their
  // secrets. Checks every coefficient: the residual error within summands * eta and the value
  // within +-max_abs (in quantised units; < 0 = the summands' full range), and the padding past
  // `length` zero; DataLoss naming the value otherwise (a y that is not a seal, a wrong secret).
  Result<std::vector<int64_t>> Unmask(const std::vector<uint64_t>& sum_y,
                                      const std::vector<int64_t>& sum_s, int64_t length,
                                      int summands, const MaskSeed& seed,
                                      int64_t max_abs = -1) const;

 private:
  MaskOptions o_;
  int log_delta_ = 0;
  NegacyclicRing ring_;
};

}  // namespace ronghe::crypto
