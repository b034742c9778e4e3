// One interface for secure-aggregation schemes, between the federated runtime (and
// SecureAggregator) and the cryptography (issue 14). A party seals its quantised update into a
// `Sealed`; the coordinator's `Accumulator` checks and adds sealed updates, says what the
// key-share holders must decrypt, and finishes with the exact integer sum of the quantised
// values, range-checked. Every scheme quantises with the same function (Packer::Quantize) and
// returns the same integer sums, so their results are identical bit for bit:
//
//   none              the quantised values travel in clear (the baseline: same function, no
//                     secrecy); nothing to decrypt
//   paillier          every value packed and encrypted under threshold Paillier; the whole
//                     aggregate is decrypted (cost grows with the model)
//   paillier-masked   values under a lattice mask (mask.h), only the N-coefficient mask key under
//                     threshold Paillier: a few ciphertexts to decrypt, whatever the model size
#pragma once

#include <gmpxx.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/mask.h"
#include "ronghe/crypto/packing.h"
#include "ronghe/crypto/threshold.h"

namespace ronghe::crypto {

enum class SchemeKind { kNone, kPaillier, kPaillierMasked };
const char* SchemeName(SchemeKind kind);  // "none" | "paillier" | "paillier-masked"
Result<SchemeKind> ParseSchemeName(const std::string& name);  // InvalidArgument otherwise

struct SchemeOptions {
  SchemeKind kind = SchemeKind::kPaillierMasked;
  int bits = 16;         // Default: 16. Quantised width per value, sign included.
  double clip = 1.0;     // Default: 1.0. Values (times their scale) are clipped to [-clip, clip].
  int max_summands = 5;  // Default: 5. Parties whose updates may be summed (the packing headroom).
  std::shared_ptr<const ThresholdPublicKey> key;  // required for the Paillier schemes
  MaskOptions mask;  // paillier-masked: n, log_q, eta (value_bits and max_summands come from above)
};

// One party's sealed update, as it travels.
struct Sealed {
  std::vector<int32_t> plain;          // none: the quantised values
  std::vector<mpz_class> ciphertexts;  // paillier: the packed values; masked: the packed mask key
  std::vector<uint64_t> masked;        // paillier-masked: y, Blocks(length) * N coefficients mod q
};

class Accumulator {
 public:
  virtual ~Accumulator() = default;
  // Checks one sealed update's shape and every element (ciphertexts are units mod n^2, masked
  // coefficients below q) and adds it; on error nothing was added and the message names `what`.
  virtual Status Add(const Sealed& sealed, const std::string& what) = 0;
  int count() const { return count_; }
  // What `threshold` key-share holders must partially decrypt (empty: nothing, for none).
  virtual const std::vector<mpz_class>& ToDecrypt() const;
  // The exact integer sums of the quantised values from the combined decryption of ToDecrypt(),
  // each checked within +-max_abs_q (quantised units; < 0 = the summands' full range). DataLoss
  // when the aggregate is not a sum of honest seals.
  virtual Result<std::vector<int64_t>> Finish(const std::vector<mpz_class>& plaintexts,
                                              int64_t max_abs_q) = 0;

 protected:
  int count_ = 0;
};

class UpdateScheme {
 public:
  // Refuses options that cannot decode exactly (naming the numbers) before any key is used.
  static Result<std::unique_ptr<UpdateScheme>> Create(const SchemeOptions& options);
  virtual ~UpdateScheme() = default;

  SchemeKind kind() const { return o_.kind; }
  const Packer& quantizer() const { return packer_; }
  double step() const { return packer_.step(); }

  // Participant: the quantised update (Packer::Quantize) sealed for one round attempt. `seed`
  // fixes the attempt's public mask polynomials (masked). Fresh randomness on every call.
  virtual Result<Sealed> Seal(const std::vector<int32_t>& quantized, const MaskSeed& seed,
                              int threads) const = 0;
  // Coordinator: an empty sum over `length` values for the same attempt.
  virtual std::unique_ptr<Accumulator> NewAccumulator(int64_t length,
                                                      const MaskSeed& seed) const = 0;
  // Sizes, for limits and reports: ciphertexts and masked coefficients per sealed update.
  virtual int64_t CiphertextCount(int64_t length) const = 0;
  virtual int64_t MaskedCount(int64_t /*length*/) const { return 0; }

 protected:
  UpdateScheme(SchemeOptions o, Packer p) : o_(std::move(o)), packer_(p) {}
  SchemeOptions o_;
  Packer packer_;  // quantisation (all schemes) and packing of values (paillier)
};

}  // namespace ronghe::crypto
