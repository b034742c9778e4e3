#include "ronghe/crypto/scheme.h"

#include "ronghe/crypto/paillier.h"

namespace ronghe::crypto {

const char* SchemeName(SchemeKind kind) {
  switch (kind) {
    case SchemeKind::kNone:
      return "none";
    case SchemeKind::kPaillier:
      return "paillier";
    case SchemeKind::kPaillierMasked:
      return "paillier-masked";
  }
  return "?";
}

Result<SchemeKind> ParseSchemeName(const std::string& name) {
  for (SchemeKind k : {SchemeKind::kNone, SchemeKind::kPaillier, SchemeKind::kPaillierMasked})
    if (name == SchemeName(k)) return k;
  return InvalidArgument("unknown secure-aggregation scheme '" + name.substr(0, 64) +
                         "' (none, paillier, paillier-masked)");
}

const std::vector<mpz_class>& Accumulator::ToDecrypt() const {
  static const std::vector<mpz_class> nothing;
  return nothing;
}

namespace {

// Checks and adds ciphertexts (units mod n^2) into `acc`.
Status AddCiphertexts(const PublicKey& pk, const std::vector<mpz_class>& in, int64_t expected,
                      std::vector<mpz_class>* acc, const std::string& what) {
  if (static_cast<int64_t>(in.size()) != expected) {
    return InvalidArgument(what + ": " + std::to_string(in.size()) + " ciphertexts, expected " +
                           std::to_string(expected));
  }
  for (int64_t i = 0; i < expected; ++i)
    RETURN_IF_ERROR(pk.Validate(in[i], what + ", ciphertext " + std::to_string(i)));
  if (acc->empty()) {
    *acc = in;
  } else {
    for (int64_t i = 0; i < expected; ++i) (*acc)[i] = pk.Add((*acc)[i], in[i]);
  }
  return Status::OK();
}

// none: the quantised values in clear, summed as integers.
class PlainScheme final : public UpdateScheme {
 public:
  PlainScheme(SchemeOptions o, Packer p) : UpdateScheme(std::move(o), p) {}
  Result<Sealed> Seal(const std::vector<int32_t>& q, const MaskSeed&, int) const override {
    Sealed s;
    s.plain = q;
    return s;
  }
  int64_t CiphertextCount(int64_t) const override { return 0; }
  std::unique_ptr<Accumulator> NewAccumulator(int64_t length, const MaskSeed&) const override {
    return std::make_unique<Acc>(length, packer_.qmax());
  }

 private:
  class Acc final : public Accumulator {
   public:
    Acc(int64_t length, int64_t qmax) : sum_(length, 0), qmax_(qmax) {}
    Status Add(const Sealed& s, const std::string& what) override {
      if (s.plain.size() != sum_.size()) {
        return InvalidArgument(what + ": " + std::to_string(s.plain.size()) +
                               " values, the model has " + std::to_string(sum_.size()));
      }
      for (size_t i = 0; i < sum_.size(); ++i) {
        if (s.plain[i] < -qmax_ || s.plain[i] > qmax_) {
          return InvalidArgument(what + ": quantised value " + std::to_string(i) + " is " +
                                 std::to_string(s.plain[i]) + ", outside +-" +
                                 std::to_string(qmax_) + "; nothing of it was added");
        }
      }
      for (size_t i = 0; i < sum_.size(); ++i) sum_[i] += s.plain[i];
      ++count_;
      return Status::OK();
    }
    Result<std::vector<int64_t>> Finish(const std::vector<mpz_class>&, int64_t max_abs) override {
      if (max_abs < 0) max_abs = count_ * qmax_;
      for (size_t i = 0; i < sum_.size(); ++i) {
        if (sum_[i] < -max_abs || sum_[i] > max_abs)
          return DataLoss("aggregate value " + std::to_string(i) + " is out of range");
      }
      return sum_;
    }

   private:
    std::vector<int64_t> sum_;
    int64_t qmax_;
  };
};

// paillier: every value packed and encrypted; the whole aggregate is decrypted.
class PaillierScheme final : public UpdateScheme {
 public:
  PaillierScheme(SchemeOptions o, Packer p) : UpdateScheme(std::move(o), p) {}
  Result<Sealed> Seal(const std::vector<int32_t>& q, const MaskSeed&, int threads) const override {
    std::vector<mpz_class> plain =
        packer_.EncodeQuantized(q.data(), static_cast<int64_t>(q.size()));
    Sealed s;
    s.ciphertexts = EncryptVector(o_.key->paillier(), plain, threads);
    for (auto& p : plain) p = 0;
    return s;
  }
  int64_t CiphertextCount(int64_t length) const override { return packer_.PlaintextCount(length); }
  std::unique_ptr<Accumulator> NewAccumulator(int64_t length, const MaskSeed&) const override {
    return std::make_unique<Acc>(this, length);
  }

 private:
  class Acc final : public Accumulator {
   public:
    Acc(const PaillierScheme* s, int64_t length) : s_(s), length_(length) {}
    Status Add(const Sealed& in, const std::string& what) override {
      RETURN_IF_ERROR(AddCiphertexts(s_->o_.key->paillier(), in.ciphertexts,
                                     s_->CiphertextCount(length_), &acc_, what));
      ++count_;
      return Status::OK();
    }
    const std::vector<mpz_class>& ToDecrypt() const override { return acc_; }
    Result<std::vector<int64_t>> Finish(const std::vector<mpz_class>& plaintexts,
                                        int64_t max_abs) override {
      return s_->packer_.DecodeSumQuantized(plaintexts, length_, count_, max_abs);
    }

   private:
    const PaillierScheme* s_;
    int64_t length_;
    std::vector<mpz_class> acc_;
  };
};

// paillier-masked: y = Delta * q + a * s + e per block; only s goes under Paillier.
class MaskedScheme final : public UpdateScheme {
 public:
  MaskedScheme(SchemeOptions o, Packer values, Packer secrets, Masker masker)
      : UpdateScheme(std::move(o), values), secrets_(secrets), masker_(std::move(masker)) {}
  Result<Sealed> Seal(const std::vector<int32_t>& q, const MaskSeed& seed,
                      int threads) const override {
    ASSIGN_OR_RETURN(Masker::Sealed m,
                     masker_.Seal(q.data(), static_cast<int64_t>(q.size()), seed));
    std::vector<int32_t> s32(m.s.begin(), m.s.end());
    std::vector<mpz_class> plain = secrets_.EncodeQuantized(s32.data(), masker_.options().n);
    Sealed out;
    out.ciphertexts = EncryptVector(o_.key->paillier(), plain, threads);
    out.masked = std::move(m.y);
    std::fill(m.s.begin(), m.s.end(), 0);
    std::fill(s32.begin(), s32.end(), 0);
    for (auto& p : plain) p = 0;
    return out;
  }
  int64_t CiphertextCount(int64_t) const override {
    return secrets_.PlaintextCount(masker_.options().n);
  }
  int64_t MaskedCount(int64_t length) const override {
    return masker_.Blocks(length) * masker_.options().n;
  }
  std::unique_ptr<Accumulator> NewAccumulator(int64_t length, const MaskSeed& seed) const override {
    return std::make_unique<Acc>(this, length, seed);
  }

 private:
  class Acc final : public Accumulator {
   public:
    Acc(const MaskedScheme* s, int64_t length, const MaskSeed& seed)
        : s_(s), length_(length), seed_(seed), y_(s->MaskedCount(length), 0) {}
    Status Add(const Sealed& in, const std::string& what) override {
      // The pair travels and is accepted together: check both before adding either.
      if (static_cast<int64_t>(in.masked.size()) != s_->MaskedCount(length_)) {
        return InvalidArgument(what + ": " + std::to_string(in.masked.size()) +
                               " masked coefficients, expected " +
                               std::to_string(s_->MaskedCount(length_)));
      }
      const uint64_t mask = (uint64_t{1} << s_->masker_.options().log_q) - 1;
      for (size_t i = 0; i < in.masked.size(); ++i) {
        if (in.masked[i] > mask) {
          return InvalidArgument(what + ": masked coefficient " + std::to_string(i) +
                                 " is not below q = 2^" +
                                 std::to_string(s_->masker_.options().log_q));
        }
      }
      std::vector<mpz_class> acc = acc_;
      RETURN_IF_ERROR(AddCiphertexts(s_->o_.key->paillier(), in.ciphertexts,
                                     s_->CiphertextCount(length_), &acc, what));
      acc_ = std::move(acc);
      for (size_t i = 0; i < y_.size(); ++i) y_[i] = (y_[i] + in.masked[i]) & mask;
      ++count_;
      return Status::OK();
    }
    const std::vector<mpz_class>& ToDecrypt() const override { return acc_; }
    Result<std::vector<int64_t>> Finish(const std::vector<mpz_class>& plaintexts,
                                        int64_t max_abs) override {
      const int n = s_->masker_.options().n;
      ASSIGN_OR_RETURN(
          std::vector<int64_t> sum_s,
          s_->secrets_.DecodeSumQuantized(
              plaintexts, n, count_, static_cast<int64_t>(count_) * s_->masker_.options().eta));
      return s_->masker_.Unmask(y_, sum_s, length_, count_, seed_, max_abs);
    }

   private:
    const MaskedScheme* s_;
    int64_t length_;
    MaskSeed seed_;
    std::vector<uint64_t> y_;
    std::vector<mpz_class> acc_;
  };

  Packer secrets_;  // packs the mask key's small coefficients
  Masker masker_;
};

}  // namespace

Result<std::unique_ptr<UpdateScheme>> UpdateScheme::Create(const SchemeOptions& o) {
  if (o.kind != SchemeKind::kNone && !o.key)
    return InvalidArgument(std::string(SchemeName(o.kind)) + " needs the threshold public key");
  const int plaintext_bits = o.key ? o.key->paillier().bits() : 2048;
  PackingOptions po{o.bits, o.clip, o.max_summands, false};
  ASSIGN_OR_RETURN(Packer values, Packer::Create(po, plaintext_bits));
  switch (o.kind) {
    case SchemeKind::kNone:
      return std::unique_ptr<UpdateScheme>(new PlainScheme(o, values));
    case SchemeKind::kPaillier:
      return std::unique_ptr<UpdateScheme>(new PaillierScheme(o, values));
    case SchemeKind::kPaillierMasked: {
      MaskOptions mo = o.mask;
      mo.value_bits = o.bits;
      mo.max_summands = o.max_summands;
      ASSIGN_OR_RETURN(Masker masker, Masker::Create(mo));
      // The key's coefficients are in [-eta, eta]: a width whose qmax covers eta.
      int bits = 2;
      while ((int64_t{1} << (bits - 1)) - 1 < mo.eta) ++bits;
      ASSIGN_OR_RETURN(Packer secrets,
                       Packer::Create({bits, 1.0, o.max_summands, false}, plaintext_bits));
      return std::unique_ptr<UpdateScheme>(new MaskedScheme(o, values, secrets, std::move(masker)));
    }
  }
  return InvalidArgument("unknown scheme");
}

}  // namespace ronghe::crypto
