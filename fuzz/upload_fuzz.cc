// libFuzzer target: a party's upload as the coordinator receives it. The first byte picks the
// scheme (none, paillier, paillier-masked), the rest is the serialised v1::Upload. The coordinator
// parses it and AggregationScheme::Add checks and adds it beside two honest uploads; when it is
// accepted, the aggregate is decrypted with three key shares and decoded. Nothing may crash, and
// an accepted aggregate either decodes or is refused with DataLoss, never anything else.
//
// Seeds: with RONGHE_FUZZ_WRITE_SEEDS=DIR the target writes one honest upload per scheme to DIR
// and exits (scripts/fuzz.sh does this first).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/aggregation.h"

namespace {

using ronghe::fed::SecureAggregation;
constexpr int64_t kLength = 300;  // one mask block, six Paillier plaintexts at 1024 bits

const ronghe::crypto::ThresholdKeys& Keys() {
  static auto* k = [] {
    ronghe::crypto::DealerOptions o;
    o.bits = 1024;
    o.parties = 5;
    o.threshold = 3;
    o.insecure_for_testing = true;
    return new ronghe::crypto::ThresholdKeys(
        std::move(ronghe::crypto::DealThresholdKeys(o)).value());
  }();
  return *k;
}

struct Scheme {
  ronghe::fed::SchemeOptions options;
  std::unique_ptr<ronghe::crypto::UpdateScheme> scheme;
  std::vector<ronghe::fed::v1::Upload> honest;  // two parties' real uploads
};

const ronghe::crypto::MaskSeed& Seed() {
  static const ronghe::crypto::MaskSeed seed = ronghe::fed::AttemptSeed("fuzz", 1, "nonce");
  return seed;
}

std::vector<Scheme>& Schemes() {
  static auto* all = [] {
    auto* v = new std::vector<Scheme>();
    for (auto mode : {SecureAggregation::kNone, SecureAggregation::kPaillier,
                      SecureAggregation::kPaillierMasked}) {
      Scheme s;
      s.options.mode = mode;
      s.options.public_key = Keys().public_key;
      s.scheme = std::move(ronghe::fed::MakeScheme(s.options)).value();
      std::mt19937 rng(1);
      std::uniform_real_distribution<float> u(-0.3f, 0.3f);
      for (int p = 0; p < 3; ++p) {
        std::vector<float> update(kLength);
        for (auto& x : update) x = u(rng);
        s.honest.push_back(
            std::move(ronghe::fed::SealUpdate(s.options, *s.scheme, update, 0.2, Seed(), 1))
                .value());
      }
      v->push_back(std::move(s));
    }
    return v;
  }();
  return *all;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("RONGHE_FUZZ_WRITE_SEEDS");
  if (dir == nullptr) return 0;
  for (size_t i = 0; i < Schemes().size(); ++i) {
    std::ofstream out(std::string(dir) + "/seed-" + std::to_string(i), std::ios::binary);
    out << static_cast<char>(i) << Schemes()[i].honest[2].SerializeAsString();
  }
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Scheme& s = Schemes()[data[0] % 3];
  ronghe::fed::v1::Upload up;
  if (!up.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  auto agg = std::move(ronghe::fed::AggregationScheme::Create(s.options)).value();
  agg->Begin(kLength, Seed());
  for (int p = 0; p < 2; ++p) {
    if (!agg->Add(s.honest[p], 0.2, "honest").ok()) __builtin_trap();
  }
  if (!agg->Add(up, 0.2, "fuzzed").ok()) return 0;
  std::vector<mpz_class> plain;
  const auto& cts = agg->Ciphertexts();
  if (!cts.empty()) {
    std::vector<ronghe::crypto::PartialDecryption> parts;
    for (int i = 0; i < 3; ++i) {
      auto p = ronghe::crypto::PartialDecrypt(*Keys().public_key, Keys().shares[i], cts, 1);
      if (!p.ok()) __builtin_trap();  // Add accepted only valid ciphertexts
      parts.push_back(std::move(*p));
    }
    plain = std::move(ronghe::crypto::CombineVector(*Keys().public_key, parts, 1)).value();
  }
  auto sum = agg->Sum(plain);
  if (!sum.ok() && sum.status().code() != ronghe::StatusCode::kDataLoss) __builtin_trap();
  return 0;
}
