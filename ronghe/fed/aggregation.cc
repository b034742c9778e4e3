#include "ronghe/fed/aggregation.h"

#include <cmath>
#include <cstring>

#include "ronghe/base/hash.h"
#include "ronghe/crypto/encoding.h"

namespace ronghe::fed {

namespace {

crypto::SchemeKind KindOf(SecureAggregation mode) {
  switch (mode) {
    case SecureAggregation::kNone:
      return crypto::SchemeKind::kNone;
    case SecureAggregation::kPaillier:
      return crypto::SchemeKind::kPaillier;
    case SecureAggregation::kPaillierMasked:
      return crypto::SchemeKind::kPaillierMasked;
  }
  return crypto::SchemeKind::kNone;
}

// Masked coefficients travel in the fewest whole bytes that hold q - 1 (4 for q = 2^32).
size_t CoefficientBytes(int log_q) { return static_cast<size_t>((log_q + 7) / 8); }

std::string EncodeCoefficients(const std::vector<uint64_t>& c, int log_q) {
  const size_t w = CoefficientBytes(log_q);
  std::string out(c.size() * w, '\0');
  for (size_t i = 0; i < c.size(); ++i)
    for (size_t b = 0; b < w; ++b) out[i * w + b] = static_cast<char>(c[i] >> (8 * b));
  return out;
}

std::string EncodeInt32(const std::vector<int32_t>& v) {
  std::string out(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t u = static_cast<uint32_t>(v[i]);
    for (int b = 0; b < 4; ++b) out[i * 4 + b] = static_cast<char>(u >> (8 * b));
  }
  return out;
}

}  // namespace

const char* SecureAggregationName(SecureAggregation mode) {
  return mode == SecureAggregation::kPaillier         ? "paillier"
         : mode == SecureAggregation::kPaillierMasked ? "paillier-masked"
                                                      : "none";
}

Result<SecureAggregation> ParseSecureAggregation(const std::string& name) {
  if (name == "paillier") return SecureAggregation::kPaillier;
  if (name == "paillier-masked") return SecureAggregation::kPaillierMasked;
  if (name == "none") return SecureAggregation::kNone;
  return InvalidArgument(
      "secure_aggregation must be \"none\", \"paillier\" or \"paillier-masked\", not '" +
      name.substr(0, 64) + "'");
}

SchemeOptions SchemeOptionsOf(const v1::RoundTask& t,
                              std::shared_ptr<const crypto::ThresholdPublicKey> key) {
  SchemeOptions o;
  auto mode = ParseSecureAggregation(t.secure_aggregation());
  o.mode = mode.ok() ? *mode : SecureAggregation::kNone;  // the caller checked the name
  o.precision_bits = t.precision_bits();
  o.clip = t.clip();
  o.max_summands = t.max_summands();
  o.public_key = std::move(key);
  o.mask_n = t.mask_n();
  o.mask_log_q = t.mask_log_q();
  o.mask_eta = t.mask_eta();
  return o;
}

void SetSchemeOptions(const SchemeOptions& o, v1::RoundTask* t) {
  t->set_secure_aggregation(SecureAggregationName(o.mode));
  t->set_precision_bits(o.precision_bits);
  t->set_clip(o.clip);
  t->set_max_summands(o.max_summands);
  t->set_mask_n(o.mask_n);
  t->set_mask_log_q(o.mask_log_q);
  t->set_mask_eta(o.mask_eta);
}

Result<std::unique_ptr<crypto::UpdateScheme>> MakeScheme(const SchemeOptions& o) {
  if (!(o.clip > 0) || !std::isfinite(o.clip)) return InvalidArgument("clip must be > 0");
  crypto::SchemeOptions so;
  so.kind = KindOf(o.mode);
  so.bits = o.precision_bits;
  so.clip = o.clip;
  so.max_summands = o.max_summands;
  so.key = o.public_key;
  so.mask.n = o.mask_n;
  so.mask.log_q = o.mask_log_q;
  so.mask.eta = o.mask_eta;
  return crypto::UpdateScheme::Create(so);
}

crypto::MaskSeed AttemptSeed(const std::string& consortium, int64_t round,
                             const std::string& nonce) {
  const std::string digest =
      Sha256("ronghe.fed.mask\n" + consortium + "\n" + std::to_string(round) + "\n" + nonce);
  crypto::MaskSeed seed;
  std::memcpy(seed.data(), digest.data(), seed.size());
  return seed;
}

Result<v1::Upload> SealUpdate(const SchemeOptions& o, const crypto::UpdateScheme& scheme,
                              const std::vector<float>& update, double weight,
                              const crypto::MaskSeed& seed, int threads) {
  const int64_t len = static_cast<int64_t>(update.size());
  std::vector<int32_t> q = scheme.quantizer().Quantize(update.data(), len, weight);
  ASSIGN_OR_RETURN(crypto::Sealed sealed, scheme.Seal(q, seed, threads));
  std::fill(q.begin(), q.end(), 0);
  v1::Upload up;
  up.set_values(static_cast<uint64_t>(len));
  if (!sealed.plain.empty()) up.set_quantized(EncodeInt32(sealed.plain));
  if (!sealed.ciphertexts.empty()) {
    const size_t width = crypto::CiphertextWidth(o.public_key->paillier());
    up.set_ciphertext_bytes(static_cast<uint32_t>(width));
    up.set_ciphertexts(crypto::EncodeFixedWidth(sealed.ciphertexts, width));
  }
  if (!sealed.masked.empty()) up.set_masked(EncodeCoefficients(sealed.masked, o.mask_log_q));
  return up;
}

Result<std::unique_ptr<AggregationScheme>> AggregationScheme::Create(const SchemeOptions& o) {
  auto a = std::unique_ptr<AggregationScheme>(new AggregationScheme());
  a->o_ = o;
  ASSIGN_OR_RETURN(a->scheme_, MakeScheme(o));
  if (o.public_key) a->width_ = crypto::CiphertextWidth(o.public_key->paillier());
  return a;
}

void AggregationScheme::Begin(int64_t length, const crypto::MaskSeed& seed) {
  length_ = length;
  total_weight_ = 0;
  acc_ = scheme_->NewAccumulator(length, seed);
}

size_t AggregationScheme::MaxUploadBytes() const {
  return static_cast<size_t>(length_) * 4 +
         static_cast<size_t>(scheme_->CiphertextCount(length_)) * width_ +
         static_cast<size_t>(scheme_->MaskedCount(length_)) * CoefficientBytes(o_.mask_log_q) +
         65536;
}

Status AggregationScheme::Add(const v1::Upload& up, double weight, const std::string& what) {
  if (static_cast<int64_t>(up.values()) != length_) {
    return InvalidArgument(what + ": " + std::to_string(up.values()) + " values, the model has " +
                           std::to_string(length_));
  }
  crypto::Sealed s;
  const crypto::Packer& quantizer = scheme_->quantizer();
  if (o_.mode == SecureAggregation::kNone) {
    if (up.quantized().size() != static_cast<size_t>(length_) * 4) {
      return InvalidArgument(what + ": " + std::to_string(up.quantized().size()) +
                             " bytes of quantised values, expected " + std::to_string(length_ * 4));
    }
    // Where the coordinator sees values it checks each against this party's own bound.
    const int64_t limit = quantizer.MaxAbsQuantized(o_.clip * weight, 1);
    s.plain.resize(length_);
    for (int64_t i = 0; i < length_; ++i) {
      uint32_t u = 0;
      for (int b = 0; b < 4; ++b)
        u |= static_cast<uint32_t>(static_cast<unsigned char>(up.quantized()[i * 4 + b]))
             << (8 * b);
      s.plain[i] = static_cast<int32_t>(u);
      if (s.plain[i] < -limit || s.plain[i] > limit) {
        return InvalidArgument(what + ": value " + std::to_string(i) + " is " +
                               std::to_string(static_cast<double>(s.plain[i]) * quantizer.step()) +
                               ", outside +-" + std::to_string(o_.clip * weight) +
                               " (clip times the party's weight); nothing of it was added");
      }
    }
  }
  if (scheme_->CiphertextCount(length_) > 0) {
    if (up.ciphertext_bytes() != width_) {
      return InvalidArgument(what + ": ciphertexts of " + std::to_string(up.ciphertext_bytes()) +
                             " bytes, expected " + std::to_string(width_));
    }
    ASSIGN_OR_RETURN(s.ciphertexts,
                     crypto::DecodeFixedWidth(up.ciphertexts(), width_,
                                              scheme_->CiphertextCount(length_), what));
  }
  if (const int64_t m = scheme_->MaskedCount(length_); m > 0) {
    const size_t w = CoefficientBytes(o_.mask_log_q);
    if (up.masked().size() != static_cast<size_t>(m) * w) {
      return InvalidArgument(what + ": " + std::to_string(up.masked().size()) +
                             " bytes of masked blocks, expected " + std::to_string(m * w));
    }
    s.masked.resize(m);
    for (int64_t i = 0; i < m; ++i) {
      uint64_t c = 0;
      for (size_t b = 0; b < w; ++b)
        c |= static_cast<uint64_t>(static_cast<unsigned char>(up.masked()[i * w + b])) << (8 * b);
      s.masked[i] = c;
    }
  }
  RETURN_IF_ERROR(acc_->Add(s, what));
  total_weight_ += weight;
  return Status::OK();
}

const std::vector<mpz_class>& AggregationScheme::Ciphertexts() const { return acc_->ToDecrypt(); }

Result<std::vector<float>> AggregationScheme::Sum(const std::vector<mpz_class>& plaintexts) {
  const crypto::Packer& quantizer = scheme_->quantizer();
  const int k = acc_->count();
  ASSIGN_OR_RETURN(std::vector<int64_t> q,
                   acc_->Finish(plaintexts, quantizer.MaxAbsQuantized(o_.clip * total_weight_, k)));
  std::vector<float> out(q.size());
  for (size_t i = 0; i < q.size(); ++i)
    out[i] = static_cast<float>(static_cast<double>(q[i]) * quantizer.step());
  return out;
}

double AggregationScheme::ErrorBound() const {
  return scheme_->quantizer().MaxAbsErrorOfSum(std::max(1, contributors()));
}

}  // namespace ronghe::fed
