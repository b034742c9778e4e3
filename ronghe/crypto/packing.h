// Fixed-point encoding and packing of float vectors into Paillier plaintexts (after BatchCrypt,
// Zhang et al., USENIX ATC 2020). Each value is clipped to [-clip, clip] and quantised to a signed
// `bits`-bit integer q in [-(2^(bits-1) - 1), 2^(bits-1) - 1]; the slot stores q + offset with
// offset = 2^(bits-1) - 1, so it is never negative. A slot is bits + ceil(log2(max_summands))
// wide, so the sum of up to max_summands vectors cannot carry into the next slot.
//
// Error bound (docs/crypto.md): with step = clip / (2^(bits-1) - 1), the decoded sum of S vectors
// differs from the float sum of the clipped (and scaled) values by at most S * step / 2 per
// element with round-to-nearest, and less than S * step with stochastic rounding.
#pragma once

#include <gmpxx.h>

#include <cstdint>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::crypto {

struct PackingOptions {
  int bits = 16;         // Default: 16. Quantised width per value, sign included (2..32).
  double clip = 1.0;     // Default: 1.0. Values are clipped to [-clip, clip].
  int max_summands = 5;  // Default: 5 (participant_count). Vectors that may be summed.
  bool stochastic_rounding =
      false;  // Default: false. Unbiased rounding (BatchCrypt) instead of nearest.
};

class Packer {
 public:
  // plaintext_bits: bit length of n; packed values stay below 2^(plaintext_bits - 1) < n.
  static Result<Packer> Create(const PackingOptions& options, int plaintext_bits);

  int slot_bits() const { return slot_bits_; }
  int slots() const { return slots_; }  // values per plaintext
  double step() const { return step_; }
  int64_t PlaintextCount(int64_t length) const { return (length + slots_ - 1) / slots_; }
  // The stated bound on |decoded sum - float sum| per element for `summands` vectors.
  double MaxAbsErrorOfSum(int summands) const;

  int64_t qmax() const { return qmax_; }  // 2^(bits-1) - 1: |quantised value| <= qmax

  // Clips x[i] * scale (scale: e.g. a sample-count weight) to [-clip, clip] and rounds to a
  // multiple of step (nearest, or stochastic): the quantised value, |q| <= qmax. Non-finite -> 0.
  // Every secure-aggregation scheme quantises with this one function.
  std::vector<int32_t> Quantize(const float* x, int64_t length, double scale = 1.0) const;
  // Packs quantised values (REQUIRES |q[i]| <= qmax).
  std::vector<mpz_class> EncodeQuantized(const int32_t* q, int64_t length) const;
  // Quantize, then EncodeQuantized.
  std::vector<mpz_class> Encode(const float* x, int64_t length, double scale = 1.0) const;
  // Unpacks sums of `summands` encoded vectors back to floats (the sum, not the mean).
  //
  // Checks what an honest sum must look like and refuses (DataLoss, naming the value) anything
  // else, so that a contribution that is not an encoding (random ciphertexts, a wrong key) is
  // caught before it is used: the bits above the last slot and the slots past `length` are zero,
  // and every slot is within the summands' range. With max_abs_sum >= 0 the range is tighter:
  // |decoded value| <= max_abs_sum (the contributors' clip times their total scale) plus the
  // rounding of each summand. docs/crypto.md gives the chance that garbage passes.
  Result<std::vector<float>> DecodeSum(const std::vector<mpz_class>& sums, int64_t length,
                                       int summands, double max_abs_sum = -1) const;
  // The same, in quantised units: the exact integer sums, each within +-max_abs_q (< 0: the
  // summands' full range).
  Result<std::vector<int64_t>> DecodeSumQuantized(const std::vector<mpz_class>& sums,
                                                  int64_t length, int summands,
                                                  int64_t max_abs_q = -1) const;
  // The range bound DecodeSum uses for max_abs_sum: max_abs_sum / step + summands + 1.
  int64_t MaxAbsQuantized(double max_abs_sum, int summands) const;

 private:
  PackingOptions o_;
  int slot_bits_ = 0, slots_ = 0;
  double step_ = 0;
  int64_t offset_ = 0, qmax_ = 0;
};

}  // namespace ronghe::crypto
