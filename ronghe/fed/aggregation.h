// The seam between the round protocol and how updates are aggregated: the wire form of
// crypto::UpdateScheme (crypto/scheme.h). Participants quantise and seal their update into an
// Upload (SealUpdate); the coordinator's AggregationScheme checks and adds uploads, says what to
// decrypt, and decodes the sum. Every check happens here, where the coordinator can see it: each
// contribution as it arrives (its sender is named and excluded) and the decoded aggregate against
// the range the contributors' clip and weights allow (the attempt is abandoned and nothing is
// applied). docs/crypto.md ("What the decoder checks") says what passes and what stays out of
// reach.
//
// All schemes quantise the same way and sum integers, so "none", "paillier" and
// "paillier-masked" give the same model bit for bit.
//
// Its own library (ronghe_fed_aggregation, no LibTorch): the upload decoding is fuzzed on its own
// (fuzz/upload_fuzz.cc).
#pragma once

#include <gmpxx.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/scheme.h"
#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/fed.pb.h"

namespace ronghe::fed {

// How updates are aggregated (crypto/scheme.h): the plaintext baseline (the same quantised sums,
// in clear), threshold Paillier over every value, or lattice-masked values with only the mask
// key under threshold Paillier. On the wire and in config files by name: "none" | "paillier" |
// "paillier-masked".
enum class SecureAggregation { kNone, kPaillier, kPaillierMasked };
const char* SecureAggregationName(SecureAggregation mode);
// InvalidArgument for any other name.
Result<SecureAggregation> ParseSecureAggregation(const std::string& name);

struct SchemeOptions {
  SecureAggregation mode = SecureAggregation::kPaillierMasked;
  int precision_bits = 16;  // quantisation width per value
  double clip = 1.0;        // every update value times its weight is within [-clip, clip]
  int max_summands = 5;     // the consortium's parties: the packing's headroom
  std::shared_ptr<const crypto::ThresholdPublicKey> public_key;  // the Paillier schemes
  int mask_n = 2048, mask_log_q = 32, mask_eta = 40;             // paillier-masked
};

// The round task's scheme settings (what the participant needs to seal).
SchemeOptions SchemeOptionsOf(const v1::RoundTask& task,
                              std::shared_ptr<const crypto::ThresholdPublicKey> key);
void SetSchemeOptions(const SchemeOptions& options, v1::RoundTask* task);
Result<std::unique_ptr<crypto::UpdateScheme>> MakeScheme(const SchemeOptions& options);

// The seed of a round attempt's public mask polynomials: SHA-256 over the consortium, the round
// and the coordinator's nonce, so no single party chooses them and no two attempts share them.
crypto::MaskSeed AttemptSeed(const std::string& consortium, int64_t round,
                             const std::string& nonce);

// Participant: quantises `update * weight` and seals it into an Upload (`o`: the scheme's
// options, for the wire widths).
Result<v1::Upload> SealUpdate(const SchemeOptions& o, const crypto::UpdateScheme& scheme,
                              const std::vector<float>& update, double weight,
                              const crypto::MaskSeed& seed, int threads);

class AggregationScheme {
 public:
  static Result<std::unique_ptr<AggregationScheme>> Create(const SchemeOptions& options);

  // Starts a round attempt over a model of `length` values; forgets the previous one.
  void Begin(int64_t length, const crypto::MaskSeed& seed);
  // The largest upload payload (serialised Upload) a party may send.
  size_t MaxUploadBytes() const;
  // Checks one party's upload and adds it; `weight` is the share of the mean the coordinator gave
  // it. On error nothing was added and the message names `what` and the check that failed.
  Status Add(const v1::Upload& upload, double weight, const std::string& what);
  int contributors() const { return acc_ ? acc_->count() : 0; }
  double total_weight() const { return total_weight_; }

  // The aggregate to be decrypted by the key-share holders (empty for "none").
  const std::vector<mpz_class>& Ciphertexts() const;
  size_t CiphertextWidth() const { return width_; }
  // The weighted sum of the contributions from the combined decryption of Ciphertexts().
  // DataLoss when it fails the range check (then it must not be used).
  Result<std::vector<float>> Sum(const std::vector<mpz_class>& plaintexts);
  // The stated bound on |decoded sum - exact sum of the unquantised values| per value.
  double ErrorBound() const;
  const crypto::UpdateScheme& scheme() const { return *scheme_; }

 private:
  SchemeOptions o_;
  std::unique_ptr<crypto::UpdateScheme> scheme_;
  std::unique_ptr<crypto::Accumulator> acc_;
  size_t width_ = 0;
  int64_t length_ = 0;
  double total_weight_ = 0;
};

}  // namespace ronghe::fed
