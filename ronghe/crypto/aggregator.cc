#include "ronghe/crypto/aggregator.h"

#include <openssl/rand.h>

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

SchemeKind SchemeOf(Encryption e) {
  switch (e) {
    case Encryption::kNone:
      return SchemeKind::kNone;
    case Encryption::kPaillier:
      return SchemeKind::kPaillier;
    case Encryption::kPaillierMasked:
      return SchemeKind::kPaillierMasked;
  }
  return SchemeKind::kNone;
}

SecureAggregator::SecureAggregator(SecureAggregatorOptions options) : o_(options) {}

Result<std::unique_ptr<SecureAggregator>> SecureAggregator::Create(
    SecureAggregatorOptions options) {
  auto a = std::make_unique<SecureAggregator>(options);
  RETURN_IF_ERROR(a->Init());
  return a;
}

Status SecureAggregator::Init() {
  if (scheme_) return Status::OK();
  if (o_.participant_count < 1) return InvalidArgument("participant_count must be >= 1");
  if (o_.threshold < 1 || o_.threshold > o_.participant_count) {
    return InvalidArgument("threshold must be between 1 and participant_count (" +
                           std::to_string(o_.participant_count) + ")");
  }
  SchemeOptions so;
  so.kind = SchemeOf(o_.encryption);
  so.bits = o_.precision_bits;
  so.clip = o_.clip;
  so.max_summands = o_.participant_count;
  so.mask = o_.mask;
  // Parameters that cannot decode exactly are refused before keys are dealt (minutes at 3072 bits).
  RETURN_IF_ERROR(Packer::Create({so.bits, so.clip, so.max_summands, false}, o_.key_bits).status());
  if (so.kind == SchemeKind::kPaillierMasked) {
    MaskOptions mo = so.mask;
    mo.value_bits = so.bits;
    mo.max_summands = so.max_summands;
    RETURN_IF_ERROR(Masker::Create(mo).status());
  }
  if (so.kind != SchemeKind::kNone && !keys_) {
    DealerOptions d;
    d.bits = o_.key_bits;
    d.parties = o_.participant_count;
    d.threshold = o_.threshold;
    d.insecure_for_testing = o_.insecure_for_testing;
    ASSIGN_OR_RETURN(ThresholdKeys k, DealThresholdKeys(d));
    keys_ = std::make_unique<ThresholdKeys>(std::move(k));
  }
  if (keys_) so.key = keys_->public_key;
  ASSIGN_OR_RETURN(scheme_, UpdateScheme::Create(so));
  return Status::OK();
}

Result<double> SecureAggregator::ErrorBound(int summands) const {
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
  // Weighted: each participant clips, then scales by w_i / sum(w), so the decoded sum is the
  // average. Unweighted updates are quantised as they are and the sum divided afterwards. Either
  // way the clipping range applies to the raw values.
  auto scale = [&](size_t i) { return weights.empty() ? 1.0 : weights[i] / wsum; };
  const UpdateScheme& scheme = *scheme_;
  // Stochastic rounding draws fresh randomness per call; the schemes' own quantiser rounds to the
  // nearest step (what makes the federated schemes equal bit for bit).
  PackingOptions po{o_.precision_bits, o_.clip, o_.participant_count, o_.stochastic_rounding};
  ASSIGN_OR_RETURN(Packer quantizer, Packer::Create(po, o_.key_bits));
  stats->ciphertexts_per_party = scheme.CiphertextCount(len);
  stats->masked_per_party = scheme.MaskedCount(len);
  stats->bytes_per_party =
      (scheme.kind() == SchemeKind::kNone ? len * 4 : 0) +
      stats->ciphertexts_per_party *
          (keys_ ? static_cast<int64_t>(ByteLength(keys_->public_key->paillier().n2())) : 0) +
      stats->masked_per_party * ((o_.mask.log_q + 7) / 8);
  // One attempt's public mask polynomials, from a seed no participant chooses.
  MaskSeed seed{};
  if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) != 1)
    return Internal("aggregate: the OS random number generator is unavailable");

  // Participants: quantise and seal. Coordinator: check and add each sealed update.
  auto acc = scheme.NewAccumulator(len, seed);
  double seal = 0, add = 0;
  std::vector<float> clipped;
  for (size_t i = 0; i < updates.size(); ++i) {
    double t0 = Now();
    std::vector<int32_t> q;
    if (weights.empty()) {
      q = quantizer.Quantize(updates[i].data(), len);
    } else {
      // The clip bounds the raw values, so a party's influence is at most its weight's share.
      clipped.assign(updates[i].begin(), updates[i].end());
      for (float& v : clipped)
        v = std::clamp(v, static_cast<float>(-o_.clip), static_cast<float>(o_.clip));
      q = quantizer.Quantize(clipped.data(), len, scale(i));
    }
    ASSIGN_OR_RETURN(Sealed sealed, scheme.Seal(q, seed, o_.threads));
    std::fill(q.begin(), q.end(), 0);
    seal += Now() - t0;
    t0 = Now();
    RETURN_IF_ERROR(acc->Add(sealed, "update " + std::to_string(i)));
    add += Now() - t0;
  }
  stats->encrypt_seconds = seal / updates.size();
  stats->add_seconds = add;

  // Decrypting parties: partial decryptions of the aggregate only.
  const std::vector<mpz_class>& sum = acc->ToDecrypt();
  stats->ciphertexts_decrypted = static_cast<int64_t>(sum.size());
  std::vector<mpz_class> plain_sum;
  if (!sum.empty()) {
    const ThresholdPublicKey& pub = *keys_->public_key;
    std::vector<int> responders = control.responders;
    if (responders.empty()) {
      for (int i = 1; i <= o_.threshold; ++i) responders.push_back(i);
    }
    std::vector<PartialDecryption> valid;
    for (int idx : responders) {
      if (idx < 1 || idx > pub.parties())
        return InvalidArgument("aggregate: no party " + std::to_string(idx));
      double t0 = Now();
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
    double t0 = Now();
    ASSIGN_OR_RETURN(plain_sum, CombineVector(pub, valid, o_.threads));
    stats->combine_seconds = Now() - t0;
  }
  double t0 = Now();
  // The range each sum must fall in: the contributors' clip times their total scale.
  const double total_scale = weights.empty() ? static_cast<double>(updates.size()) : 1.0;
  ASSIGN_OR_RETURN(
      std::vector<int64_t> q_sum,
      acc->Finish(plain_sum, quantizer.MaxAbsQuantized(o_.clip * total_scale,
                                                       static_cast<int>(updates.size()))));
  std::vector<float> out(q_sum.size());
  const double divide = weights.empty() ? static_cast<double>(updates.size()) : 1.0;
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<float>(static_cast<double>(q_sum[i]) * quantizer.step() / divide);
  stats->combine_seconds += Now() - t0;
  return out;
}

}  // namespace ronghe::crypto
