// SecureAggregator: the in-process form of secure aggregation, on the same scheme interface as
// the federated runtime (scheme.h). Each participant's update is clipped and quantised, then
// sealed by the scheme (kPaillier: every value packed and encrypted under the threshold Paillier
// key; kPaillierMasked: the values under a lattice mask and only the mask key under Paillier); the
// coordinator checks and adds the sealed updates; `threshold` parties partially decrypt the
// aggregate only (with verified proofs); the exact integer sum is decoded and averaged. No single
// update is ever decrypted. kNone computes the same sums in clear, so all three give the same
// result bit for bit.
//
//   SecureAggregator agg({.encryption = kPaillier, .participant_count = 5, .threshold = 3});
//   ASSIGN_OR_RETURN(std::vector<float> mean, agg.Aggregate(updates));
//
// The networked runtime (ronghe/fed) drives the same pieces across processes.
// Not thread-safe: one Aggregate at a time per instance.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/mask.h"
#include "ronghe/crypto/scheme.h"
#include "ronghe/crypto/threshold.h"

namespace ronghe::crypto {

enum class Encryption {
  kNone,            // the baseline: the same quantised integer sums, in clear
  kPaillier,        // threshold Paillier, every value packed and encrypted
  kPaillierMasked,  // lattice-masked values, the mask keys under threshold Paillier
};
inline constexpr Encryption kNone = Encryption::kNone;
inline constexpr Encryption kPaillier = Encryption::kPaillier;
inline constexpr Encryption kPaillierMasked = Encryption::kPaillierMasked;
SchemeKind SchemeOf(Encryption e);

struct SecureAggregatorOptions {
  Encryption encryption = kPaillierMasked;  // Default: kPaillierMasked (decryption cost does not
                                            // grow with the update's length).
  int participant_count = 5;                // Default: 5. Updates per round (at most).
  int threshold = 3;                        // Default: 3. Parties needed to decrypt.
  int key_bits = 2048;                      // Default: 2048. Or 3072.
  int precision_bits = 16;                  // Default: 16. Quantisation width per value.
  double clip = 1.0;                  // Default: 1.0. Update values are clipped to [-clip, clip].
  bool stochastic_rounding = false;   // Default: false. Unbiased rounding; then results differ
                                      // between calls (fresh randomness), not between schemes.
  MaskOptions mask;                   // kPaillierMasked: n (2048), log_q (32), eta (40); the
                                      // value width and summands come from the fields above.
  int threads = 0;                    // Default: 0 = all cores.
  bool insecure_for_testing = false;  // Default: false. Allows small keys (unit tests only).
};

// Where the time and bytes of a round went.
struct AggregateStats {
  int64_t ciphertexts_per_party = 0;
  int64_t masked_per_party = 0;        // kPaillierMasked: masked coefficients
  int64_t bytes_per_party = 0;         // one party's sealed update: 4 bytes per value (kNone),
                                       // |n^2| bytes per ciphertext, ceil(log_q/8) per coefficient
  int64_t ciphertexts_decrypted = 0;   // by each decrypting party
  double encrypt_seconds = 0;          // quantise and seal, per participant (mean)
  double add_seconds = 0;              // coordinator
  double partial_decrypt_seconds = 0;  // per decrypting party (max), proof included
  double verify_seconds = 0;           // coordinator, all parties
  double combine_seconds = 0;
  std::vector<int> decrypting_parties;
  std::vector<std::string> rejected;  // one line per party whose shares failed
};

// Lets a caller choose which parties answer the decryption request and simulate misbehaviour.
struct RoundControl {
  std::vector<int> responders;  // party indices (1-based); empty = the first `threshold`
  std::function<void(PartialDecryption&)> tamper;  // applied to each answer before verification
};

class SecureAggregator {
 public:
  explicit SecureAggregator(SecureAggregatorOptions options);
  // Checks the options and deals the keys now instead of on the first Aggregate.
  static Result<std::unique_ptr<SecureAggregator>> Create(SecureAggregatorOptions options);

  // The (weighted) average of `updates`: weights are sample counts (empty = equal weights).
  Result<std::vector<float>> Aggregate(const std::vector<std::vector<float>>& updates,
                                       const std::vector<double>& weights = {});
  Result<std::vector<float>> Aggregate(const std::vector<std::vector<float>>& updates,
                                       const std::vector<double>& weights,
                                       const RoundControl& control, AggregateStats* stats);

  // The stated bound on |decoded sum - float sum of the clipped (scaled) values| per element for
  // `summands` updates: quantisation, the same for every scheme (the unweighted mean's bound is
  // this divided by the count).
  Result<double> ErrorBound(int summands) const;
  const SecureAggregatorOptions& options() const { return o_; }
  // Dealt keys (null before the first Aggregate or Create).
  const ThresholdKeys* keys() const { return keys_.get(); }

 private:
  Status Init();
  SecureAggregatorOptions o_;
  std::unique_ptr<ThresholdKeys> keys_;
  std::unique_ptr<UpdateScheme> scheme_;
};

}  // namespace ronghe::crypto
