// The seam between the coordinator's round protocol and how updates are aggregated. A scheme adds
// the contributions of one round attempt and decodes their sum, and it checks both where the
// coordinator can see them: each contribution as it arrives (its sender is named and excluded)
// and the decoded aggregate against the range that the contributors' clip and weights allow (the
// attempt is abandoned and nothing is applied). docs/crypto.md ("What the coordinator checks")
// says what passes these checks and what stays out of reach.
//
// Two schemes today: the plaintext FedAvg baseline ("none": the coordinator sees every scaled
// update and checks each value) and threshold Paillier ("paillier": it sees ciphertexts, checks
// that each is a unit mod n^2, and checks every packed slot of the decrypted sum).
#pragma once

#include <gmpxx.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/wire.h"

namespace ronghe::fed {

struct SchemeOptions {
  SecureAggregation mode = SecureAggregation::kPaillier;
  int precision_bits = 16;  // quantisation width per value (paillier)
  double clip = 1.0;        // every update value is within [-clip, clip] before its weight
  int max_summands = 5;     // the consortium's parties: the packing's headroom
  std::shared_ptr<const crypto::ThresholdPublicKey> public_key;  // paillier
};

class AggregationScheme {
 public:
  static Result<std::unique_ptr<AggregationScheme>> Create(const SchemeOptions& options);
  virtual ~AggregationScheme() = default;

  // Starts a round attempt over a model of `length` values; forgets the previous one.
  virtual void Begin(int64_t length) = 0;
  // The largest upload payload (serialised Upload) a party may send.
  virtual size_t MaxUploadBytes() const = 0;
  // Checks one party's upload and adds it; `weight` is the share of the mean the coordinator gave
  // it. On error nothing was added and the message names `what` and the check that failed.
  virtual Status Add(const v1::Upload& upload, double weight, const std::string& what) = 0;
  int contributors() const { return contributors_; }
  double total_weight() const { return total_weight_; }

  // Secure schemes: the aggregate to be decrypted by the key-share holders (empty otherwise).
  virtual const std::vector<mpz_class>& Ciphertexts() const;
  virtual size_t CiphertextWidth() const { return 0; }
  // The weighted sum of the contributions, from the combined decryption of Ciphertexts() (secure)
  // or directly (plaintext). DataLoss when it fails the range check (then it must not be used).
  virtual Result<std::vector<float>> Sum(const std::vector<mpz_class>& plaintexts) = 0;
  // The stated bound on |decoded sum - exact sum| per value for the current contributors.
  virtual double ErrorBound() const = 0;

 protected:
  int contributors_ = 0;
  double total_weight_ = 0;
};

}  // namespace ronghe::fed
