// The test below replaces OpenSSL's random method (deprecated in 3.0, still honoured by
// RAND_bytes) to force equal randomness.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "ronghe/crypto/scheme.h"

#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <random>

namespace ronghe::crypto {
namespace {

const ThresholdKeys& Keys() {
  static const ThresholdKeys* keys = [] {
    DealerOptions d{.bits = 1024, .parties = 5, .threshold = 3, .insecure_for_testing = true};
    return new ThresholdKeys(std::move(DealThresholdKeys(d)).value());
  }();
  return *keys;
}

std::unique_ptr<UpdateScheme> Make(SchemeKind kind) {
  SchemeOptions o;
  o.kind = kind;
  o.key = Keys().public_key;
  auto s = UpdateScheme::Create(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

// What three key-share holders would return: the combined decryption of the aggregate.
std::vector<mpz_class> Decrypt(const std::vector<mpz_class>& cts) {
  if (cts.empty()) return {};
  std::vector<PartialDecryption> parts;
  for (int i = 0; i < 3; ++i)
    parts.push_back(PartialDecrypt(*Keys().public_key, Keys().shares[i], cts, 1).value());
  return CombineVector(*Keys().public_key, parts, 1).value();
}

MaskSeed Seed() {
  MaskSeed s{};
  s[0] = 42;
  return s;
}

Result<std::vector<int64_t>> RunRound(const UpdateScheme& scheme,
                                      const std::vector<std::vector<int32_t>>& qs) {
  auto acc = scheme.NewAccumulator(static_cast<int64_t>(qs[0].size()), Seed());
  for (size_t i = 0; i < qs.size(); ++i) {
    ASSIGN_OR_RETURN(Sealed s, scheme.Seal(qs[i], Seed(), 1));
    RETURN_IF_ERROR(acc->Add(s, "party " + std::to_string(i)));
  }
  return acc->Finish(Decrypt(acc->ToDecrypt()), -1);
}

// The three schemes compute the same integer sums, exactly: at the clip bounds with the declared
// maximum of parties, and on weighted random updates.
TEST(SchemeTest, AllSchemesGiveTheSameIntegerSums) {
  auto none = Make(SchemeKind::kNone), paillier = Make(SchemeKind::kPaillier),
       masked = Make(SchemeKind::kPaillierMasked);
  ASSERT_TRUE(none && paillier && masked);
  const int64_t len = 2500;  // two mask blocks, several Paillier plaintexts
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  for (int pattern = 0; pattern < 3; ++pattern) {
    std::vector<std::vector<int32_t>> qs;
    for (int p = 0; p < 5; ++p) {
      std::vector<float> x(len);
      for (auto& v : x) v = pattern == 0 ? 1.0f : pattern == 1 ? -1.0f : u(rng);
      qs.push_back(none->quantizer().Quantize(x.data(), len, pattern == 2 ? 0.1 + 0.1 * p : 1.0));
    }
    std::vector<int64_t> want(len, 0);
    for (auto& q : qs)
      for (int64_t i = 0; i < len; ++i) want[i] += q[i];
    for (const UpdateScheme* s : {none.get(), paillier.get(), masked.get()}) {
      auto got = RunRound(*s, qs);
      ASSERT_TRUE(got.ok()) << SchemeName(s->kind()) << ": " << got.status().ToString();
      EXPECT_EQ(*got, want) << SchemeName(s->kind()) << " pattern " << pattern;
    }
  }
}

// The masked scheme decrypts a handful of ciphertexts whatever the model size, and every seal
// draws a fresh mask key.
TEST(SchemeTest, MaskedDecryptsOnlyTheKeyAndNeverReusesIt) {
  auto masked = Make(SchemeKind::kPaillierMasked);
  ASSERT_TRUE(masked);
  EXPECT_EQ(masked->CiphertextCount(1000), masked->CiphertextCount(10000000));
  EXPECT_LE(masked->CiphertextCount(1000), 32);
  std::vector<int32_t> q(100, 7);
  auto a = masked->Seal(q, Seed(), 1), b = masked->Seal(q, Seed(), 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->ciphertexts, b->ciphertexts);
  EXPECT_NE(a->masked, b->masked);
}

// A generator forced to repeat itself (every seal sees the same random stream, as a VM snapshot
// restored twice or a broken RAND configuration would give) cannot make a party reuse its mask
// key: the second seal fails loudly instead of sending.
std::mt19937_64 forced_stream;
int ForcedBytes(unsigned char* buf, int num) {
  for (int i = 0; i < num; ++i) buf[i] = static_cast<unsigned char>(forced_stream());
  return 1;
}
int ForcedStatus() { return 1; }

TEST(SchemeTest, ForcedEqualRandomnessFailsLoudly) {
  auto masked = Make(SchemeKind::kPaillierMasked);
  ASSERT_TRUE(masked);
  std::vector<int32_t> q(100, 7);
  RAND_METHOD forced = {nullptr, ForcedBytes, nullptr, nullptr, ForcedBytes, ForcedStatus};
  const RAND_METHOD* real = RAND_get_rand_method();
  ASSERT_EQ(RAND_set_rand_method(&forced), 1);
  forced_stream.seed(1);
  auto first = masked->Seal(q, Seed(), 1);
  forced_stream.seed(1);
  auto second = masked->Seal(q, Seed(), 1);
  RAND_set_rand_method(real);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kInternal);
  EXPECT_NE(second.status().message().find("drew before"), std::string::npos)
      << second.status().message();
  // With the real generator back, sealing works again and draws a new key.
  auto third = masked->Seal(q, Seed(), 1);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_NE(third->ciphertexts, first->ciphertexts);
}

// Malformed sealed updates are refused whole (nothing added), naming the sender; a masked update
// that is not a seal passes Add but fails the aggregate's check.
TEST(SchemeTest, MalformedAndGarbageUpdatesAreCaught) {
  auto masked = Make(SchemeKind::kPaillierMasked);
  ASSERT_TRUE(masked);
  const int64_t len = 300;
  std::vector<int32_t> q(len, 5);
  auto good = masked->Seal(q, Seed(), 1).value();
  auto acc = masked->NewAccumulator(len, Seed());
  auto fewer = good;
  fewer.masked.pop_back();
  auto big = good;
  big.masked[3] = uint64_t{1} << 40;
  auto short_ct = good;
  short_ct.ciphertexts.pop_back();
  for (const auto* bad : {&fewer, &big, &short_ct}) {
    Status st = acc->Add(*bad, "bank-x's upload");
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("bank-x's upload"), std::string::npos) << st.message();
  }
  EXPECT_EQ(acc->count(), 0);
  ASSERT_TRUE(acc->Add(good, "a").ok());
  auto junk = masked->Seal(q, Seed(), 1).value();
  std::mt19937_64 rng(3);
  for (auto& c : junk.masked) c = rng() & 0xffffffffull;
  ASSERT_TRUE(acc->Add(junk, "b").ok());  // well-formed: only the aggregate can tell
  auto sum = acc->Finish(Decrypt(acc->ToDecrypt()), -1);
  ASSERT_FALSE(sum.ok());
  EXPECT_NE(sum.status().message().find("not a sum of 2 sealed updates"), std::string::npos)
      << sum.status().message();
  EXPECT_FALSE(ParseSchemeName("rot13").ok());
  EXPECT_EQ(ParseSchemeName("paillier-masked").value(), SchemeKind::kPaillierMasked);
}

}  // namespace
}  // namespace ronghe::crypto
