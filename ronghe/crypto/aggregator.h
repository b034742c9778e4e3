// SecureAggregator: the in-process form of secure aggregation. Each participant's update is
// encoded, packed and encrypted under the threshold Paillier key; the ciphertexts are added
// homomorphically; `threshold` parties partially decrypt the aggregate only (with verified
// proofs); the combined sum is decoded and averaged. No single update is ever decrypted.
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
#include "ronghe/crypto/threshold.h"

namespace ronghe::crypto {

enum class Encryption {
  kNone,      // plaintext baseline: the exact float (weighted) average
  kPaillier,  // threshold Paillier with packing
};
inline constexpr Encryption kNone = Encryption::kNone;
inline constexpr Encryption kPaillier = Encryption::kPaillier;

struct SecureAggregatorOptions {
  Encryption encryption = kPaillier;  // Default: kPaillier.
  int participant_count = 5;          // Default: 5. Updates per round (at most).
  int threshold = 3;                  // Default: 3. Parties needed to decrypt.
  int key_bits = 2048;                // Default: 2048. Or 3072.
  int precision_bits = 16;            // Default: 16. Quantisation width per value.
  double clip = 1.0;                  // Default: 1.0. Update values are clipped to [-clip, clip].
  bool stochastic_rounding = false;   // Default: false.
  int threads = 0;                    // Default: 0 = all cores.
  bool insecure_for_testing = false;  // Default: false. Allows small keys (unit tests only).
};

// Where the time and bytes of a round went.
struct AggregateStats {
  int64_t ciphertexts_per_party = 0;
  int64_t bytes_per_party = 0;         // one party's upload (ciphertexts at |n^2| bytes each)
  double encrypt_seconds = 0;          // per participant (mean)
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

  // The stated bound on |Paillier result - kNone result| per element for `summands` updates.
  Result<double> ErrorBound(int summands) const;
  const SecureAggregatorOptions& options() const { return o_; }
  // Dealt keys (null before the first Aggregate or Create).
  const ThresholdKeys* keys() const { return keys_.get(); }

 private:
  Status Init();
  SecureAggregatorOptions o_;
  std::unique_ptr<ThresholdKeys> keys_;
};

}  // namespace ronghe::crypto
