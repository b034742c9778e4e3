#include "ronghe/fed/aggregation.h"

#include <cmath>
#include <cstdio>
#include <optional>

#include "ronghe/crypto/encoding.h"
#include "ronghe/crypto/packing.h"

namespace ronghe::fed {

namespace {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// The plaintext baseline: each value must be finite and within clip * weight; the sum is exact
// up to float rounding.
class PlainScheme final : public AggregationScheme {
 public:
  explicit PlainScheme(const SchemeOptions& o) : o_(o) {}
  void Begin(int64_t length) override {
    length_ = length;
    sum_.assign(length, 0.0);
    contributors_ = 0;
    total_weight_ = 0;
  }
  size_t MaxUploadBytes() const override { return static_cast<size_t>(length_) * 4 + 65536; }
  Status Add(const v1::Upload& up, double weight, const std::string& what) override {
    if (static_cast<int64_t>(up.values()) != length_) {
      return InvalidArgument(what + ": " + std::to_string(up.values()) + " values, the model has " +
                             std::to_string(length_));
    }
    ASSIGN_OR_RETURN(std::vector<float> vals, DecodeFloats(up.plain(), length_, what));
    // The participant sends clip(update) * weight in float: allow that rounding, nothing more.
    const double limit = o_.clip * weight * (1 + 1e-6);
    for (int64_t i = 0; i < length_; ++i) {
      if (!std::isfinite(vals[i]) || std::abs(static_cast<double>(vals[i])) > limit) {
        return InvalidArgument(what + ": value " + std::to_string(i) + " is " + Num(vals[i]) +
                               ", outside +-" + Num(o_.clip * weight) +
                               " (clip times the party's weight); nothing of it was added");
      }
    }
    for (int64_t i = 0; i < length_; ++i) sum_[i] += vals[i];
    ++contributors_;
    total_weight_ += weight;
    return Status::OK();
  }
  Result<std::vector<float>> Sum(const std::vector<mpz_class>&) override {
    std::vector<float> out(length_);
    const double limit = o_.clip * total_weight_ * (1 + 1e-5);
    for (int64_t i = 0; i < length_; ++i) {
      if (!(std::abs(sum_[i]) <= limit))
        return DataLoss("aggregate value " + std::to_string(i) + " is out of range");
      out[i] = static_cast<float>(sum_[i]);
    }
    return out;
  }
  double ErrorBound() const override { return 0; }

 private:
  SchemeOptions o_;
  int64_t length_ = 0;
  std::vector<double> sum_;
};

// Threshold Paillier over packed fixed-point slots (crypto/packing.h).
class PaillierScheme final : public AggregationScheme {
 public:
  PaillierScheme(const SchemeOptions& o, crypto::Packer packer)
      : o_(o), packer_(packer), width_(crypto::CiphertextWidth(o.public_key->paillier())) {}
  void Begin(int64_t length) override {
    length_ = length;
    count_ = packer_.PlaintextCount(length);
    acc_.clear();
    contributors_ = 0;
    total_weight_ = 0;
  }
  size_t MaxUploadBytes() const override { return static_cast<size_t>(count_) * width_ + 65536; }
  Status Add(const v1::Upload& up, double weight, const std::string& what) override {
    if (static_cast<int64_t>(up.values()) != length_) {
      return InvalidArgument(what + ": " + std::to_string(up.values()) + " values, the model has " +
                             std::to_string(length_));
    }
    if (up.ciphertext_bytes() != width_) {
      return InvalidArgument(what + ": ciphertexts of " + std::to_string(up.ciphertext_bytes()) +
                             " bytes, expected " + std::to_string(width_));
    }
    ASSIGN_OR_RETURN(std::vector<mpz_class> cts,
                     crypto::DecodeFixedWidth(up.ciphertexts(), width_, count_, what));
    const crypto::PublicKey& pk = o_.public_key->paillier();
    for (int64_t i = 0; i < count_; ++i) {
      RETURN_IF_ERROR(pk.Validate(cts[i], what + ", ciphertext " + std::to_string(i)));
    }
    if (acc_.empty()) {
      acc_ = std::move(cts);
    } else {
      for (int64_t i = 0; i < count_; ++i) acc_[i] = pk.Add(acc_[i], cts[i]);
    }
    ++contributors_;
    total_weight_ += weight;
    return Status::OK();
  }
  const std::vector<mpz_class>& Ciphertexts() const override { return acc_; }
  size_t CiphertextWidth() const override { return width_; }
  Result<std::vector<float>> Sum(const std::vector<mpz_class>& plaintexts) override {
    return packer_.DecodeSum(plaintexts, length_, contributors_, o_.clip * total_weight_);
  }
  double ErrorBound() const override { return packer_.MaxAbsErrorOfSum(contributors_); }

 private:
  SchemeOptions o_;
  crypto::Packer packer_;
  size_t width_;
  int64_t length_ = 0, count_ = 0;
  std::vector<mpz_class> acc_;
};

}  // namespace

const std::vector<mpz_class>& AggregationScheme::Ciphertexts() const {
  static const std::vector<mpz_class> none;
  return none;
}

Result<std::unique_ptr<AggregationScheme>> AggregationScheme::Create(const SchemeOptions& o) {
  if (!(o.clip > 0) || !std::isfinite(o.clip)) return InvalidArgument("clip must be > 0");
  if (o.mode == SecureAggregation::kNone)
    return std::unique_ptr<AggregationScheme>(new PlainScheme(o));
  if (!o.public_key) return InvalidArgument("paillier needs the consortium's public key");
  crypto::PackingOptions po{o.precision_bits, o.clip, o.max_summands, false};
  ASSIGN_OR_RETURN(crypto::Packer packer,
                   crypto::Packer::Create(po, o.public_key->paillier().bits()));
  return std::unique_ptr<AggregationScheme>(new PaillierScheme(o, packer));
}

}  // namespace ronghe::fed
