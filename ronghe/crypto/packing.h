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

  // Quantises x[i] * scale (scale: e.g. a sample-count weight) and packs.
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

 private:
  PackingOptions o_;
  int slot_bits_ = 0, slots_ = 0;
  double step_ = 0;
  int64_t offset_ = 0, qmax_ = 0;
};

}  // namespace ronghe::crypto
