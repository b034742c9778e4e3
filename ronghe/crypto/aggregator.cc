#include "ronghe/crypto/aggregator.h"

#include <chrono>
#include <cmath>

#include "ronghe/base/thread_pool.h"
#include "ronghe/crypto/bigint.h"
#include "ronghe/crypto/packing.h"

namespace ronghe::crypto {

namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

SecureAggregator::SecureAggregator(SecureAggregatorOptions options) : o_(options) {}

Result<std::unique_ptr<SecureAggregator>> SecureAggregator::Create(
    SecureAggregatorOptions options) {
  auto a = std::make_unique<SecureAggregator>(options);
  RETURN_IF_ERROR(a->Init());
  return a;
}

Status SecureAggregator::Init() {
  if (o_.participant_count < 1) return InvalidArgument("participant_count must be >= 1");
  if (o_.threshold < 1 || o_.threshold > o_.participant_count) {
    return InvalidArgument("threshold must be between 1 and participant_count (" +
                           std::to_string(o_.participant_count) + ")");
  }
  if (o_.encryption == kNone || keys_) return Status::OK();
  DealerOptions d;
  d.bits = o_.key_bits;
  d.parties = o_.participant_count;
  d.threshold = o_.threshold;
  d.insecure_for_testing = o_.insecure_for_testing;
  ASSIGN_OR_RETURN(ThresholdKeys k, DealThresholdKeys(d));
  keys_ = std::make_unique<ThresholdKeys>(std::move(k));
  return Status::OK();
}

Result<double> SecureAggregator::ErrorBound(int summands) const {
  if (o_.encryption == kNone) return 0.0;
  PackingOptions po{o_.precision_bits, o_.clip, o_.participant_count, o_.stochastic_rounding};
  ASSIGN_OR_RETURN(Packer packer, Packer::Create(po, o_.key_bits));
  return packer.MaxAbsErrorOfSum(summands);
}

Result<std::vector<float>> SecureAggregator::Aggregate(
    const std::vector<std::vector<float>>& updates, const std::vector<double>& weights) {
  AggregateStats stats;
  return Aggregate(updates, weights, RoundControl{}, &stats);
}

Result<std::vector<float>> SecureAggregator::Aggregate(
    const std::vector<std::vector<float>>& updates, const std::vector<double>& weights,
    const RoundControl& control, AggregateStats* stats) {
  RETURN_IF_ERROR(Init());
  if (updates.empty()) return InvalidArgument("aggregate: no updates");
  if (static_cast<int>(updates.size()) > o_.participant_count) {
    return InvalidArgument("aggregate: " + std::to_string(updates.size()) + " updates for " +
                           std::to_string(o_.participant_count) + " participants");
  }
  const int64_t len = static_cast<int64_t>(updates[0].size());
  for (size_t i = 0; i < updates.size(); ++i) {
    if (static_cast<int64_t>(updates[i].size()) != len) {
      return InvalidArgument("aggregate: update " + std::to_string(i) + " has " +
                             std::to_string(updates[i].size()) + " values, update 0 has " +
                             std::to_string(len));
    }
  }
  if (!weights.empty() && weights.size() != updates.size()) {
    return InvalidArgument("aggregate: one weight per update is needed");
  }
  double wsum = 0;
  for (double w : weights) {
    if (!(w > 0) || !std::isfinite(w))
      return InvalidArgument("aggregate: weights must be positive");
    wsum += w;
  }
  // Weighted: each participant scales by w_i / sum(w), so the decoded sum is the average.
  auto scale = [&](size_t i) { return weights.empty() ? 1.0 / updates.size() : weights[i] / wsum; };

  if (o_.encryption == kNone) {
    std::vector<double> acc(len, 0.0);
    for (size_t i = 0; i < updates.size(); ++i) {
      double s = scale(i);
      for (int64_t j = 0; j < len; ++j) acc[j] += s * updates[i][j];
    }
    return std::vector<float>(acc.begin(), acc.end());
  }

  const auto& pub = *keys_->public_key;
  const auto& pk = pub.paillier();
  PackingOptions po{o_.precision_bits, o_.clip, o_.participant_count, o_.stochastic_rounding};
  ASSIGN_OR_RETURN(Packer packer, Packer::Create(po, pk.bits()));
  const int64_t count = packer.PlaintextCount(len);
  stats->ciphertexts_per_party = count;
  stats->bytes_per_party = count * static_cast<int64_t>(ByteLength(pk.n2()));

  // Participants: encode, pack, encrypt. Unweighted updates are encoded as they are and the sum
  // is divided afterwards, so the clipping range applies to the raw values.
  std::vector<std::vector<mpz_class>> uploads(updates.size());
  double t0 = Now();
  for (size_t i = 0; i < updates.size(); ++i) {
    std::vector<mpz_class> plain =
        packer.Encode(updates[i].data(), len, weights.empty() ? 1.0 : scale(i));
    uploads[i] = EncryptVector(pk, plain, o_.threads);
  }
  stats->encrypt_seconds = (Now() - t0) / updates.size();

  // Coordinator: validate every ciphertext and add.
  t0 = Now();
  for (size_t i = 0; i < uploads.size(); ++i) {
    for (int64_t j = 0; j < count; ++j) {
      RETURN_IF_ERROR(pk.Validate(
          uploads[i][j], "update " + std::to_string(i) + " ciphertext " + std::to_string(j)));
    }
  }
  std::vector<mpz_class> sum = uploads[0];
  ParallelFor(
      count,
      [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j)
          for (size_t i = 1; i < uploads.size(); ++i) sum[j] = pk.Add(sum[j], uploads[i][j]);
      },
      o_.threads);
  stats->add_seconds = Now() - t0;

  // Decrypting parties: partial decryptions of the aggregate only.
  std::vector<int> responders = control.responders;
  if (responders.empty()) {
    for (int i = 1; i <= o_.threshold; ++i) responders.push_back(i);
  }
  std::vector<PartialDecryption> valid;
  for (int idx : responders) {
    if (idx < 1 || idx > pub.parties())
      return InvalidArgument("aggregate: no party " + std::to_string(idx));
    t0 = Now();
    ASSIGN_OR_RETURN(PartialDecryption part,
                     PartialDecrypt(pub, keys_->shares[idx - 1], sum, o_.threads));
    stats->partial_decrypt_seconds = std::max(stats->partial_decrypt_seconds, Now() - t0);
    if (control.tamper) control.tamper(part);
    t0 = Now();
    Status ok = VerifyPartial(pub, sum, part, o_.threads);
    stats->verify_seconds += Now() - t0;
    if (!ok.ok()) {
      stats->rejected.push_back(ok.message());
      continue;
    }
    stats->decrypting_parties.push_back(part.index);
    valid.push_back(std::move(part));
    if (static_cast<int>(valid.size()) == o_.threshold) break;
  }
  if (static_cast<int>(valid.size()) < o_.threshold) {
    std::string why;
    for (const auto& r : stats->rejected) why += "; " + r;
    return FailedPrecondition("aggregate: only " + std::to_string(valid.size()) +
                              " parties gave valid shares, " + std::to_string(o_.threshold) +
                              " are needed" + why);
  }
  t0 = Now();
  ASSIGN_OR_RETURN(std::vector<mpz_class> plain_sum, CombineVector(pub, valid, o_.threads));
  ASSIGN_OR_RETURN(std::vector<float> out,
                   packer.DecodeSum(plain_sum, len, static_cast<int>(updates.size())));
  if (weights.empty()) {
    for (auto& v : out) v /= static_cast<float>(updates.size());
  }
  stats->combine_seconds = Now() - t0;
  return out;
}

}  // namespace ronghe::crypto
