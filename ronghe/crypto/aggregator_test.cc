#include "ronghe/crypto/aggregator.h"

#include <gtest/gtest.h>

#include <random>

#include "ronghe/crypto/bigint.h"
#include "ronghe/crypto/packing.h"

namespace ronghe::crypto {
namespace {

std::vector<std::vector<float>> RandomUpdates(int parties, int len, float range, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-range, range);
  std::vector<std::vector<float>> out(parties, std::vector<float>(len));
  for (auto& v : out)
    for (auto& x : v) x = u(rng);
  return out;
}

TEST(PackingTest, RoundTripWithinTheStatedBound) {
  for (bool stochastic : {false, true}) {
    for (int summands : {1, 2, 5, 10}) {
      PackingOptions o{16, 2.0, 10, stochastic};
      auto p = Packer::Create(o, 2048);
      ASSERT_TRUE(p.ok());
      EXPECT_EQ(p->slot_bits(), 16 + 4);
      EXPECT_EQ(p->slots(), 2047 / 20);
      const int len = 1000;
      auto ups = RandomUpdates(summands, len, 3.0f, 7 + summands);  // some beyond the clip range
      ups[0][0] = 2.0f;                                             // the extremes of the range
      ups[0][1] = -2.0f;
      ups[0][2] = 0.0f;
      std::vector<mpz_class> acc(p->PlaintextCount(len), 0);
      std::vector<double> want(len, 0);
      for (const auto& u : ups) {
        auto enc = p->Encode(u.data(), len);
        for (size_t j = 0; j < acc.size(); ++j) acc[j] += enc[j];
        for (int j = 0; j < len; ++j) want[j] += std::clamp<double>(u[j], -2.0, 2.0);
      }
      auto got = p->DecodeSum(acc, len, summands);
      ASSERT_TRUE(got.ok());
      double bound = p->MaxAbsErrorOfSum(summands), worst = 0;
      for (int j = 0; j < len; ++j) worst = std::max(worst, std::fabs((*got)[j] - want[j]));
      // float32 output adds at most |sum| * 2^-24.
      EXPECT_LE(worst, bound + summands * 2.0 * 6e-8)
          << "summands " << summands << " stochastic " << stochastic;
    }
  }
  auto p = Packer::Create({16, 1.0, 5, false}, 2048);
  EXPECT_FALSE(p->DecodeSum({0}, 10, 6).ok());  // beyond the headroom
  EXPECT_FALSE(Packer::Create({1, 1.0, 5, false}, 2048).ok());
  EXPECT_FALSE(Packer::Create({16, -1.0, 5, false}, 2048).ok());
}

// The decoder refuses sums that no set of honest encodings produces: bits above the last slot,
// non-zero padding, a slot outside the contributors' range; and random plaintexts (what random
// ciphertexts decrypt to) essentially never pass.
TEST(PackingTest, DecodeRefusesSumsNoHonestEncodingsMake) {
  auto p = Packer::Create({16, 1.0, 5, false}, 2048);
  ASSERT_TRUE(p.ok());
  const int len = 150;  // two plaintexts, the second mostly padding
  auto ups = RandomUpdates(3, len, 1.0f, 3);
  std::vector<mpz_class> acc(p->PlaintextCount(len), 0);
  for (const auto& u : ups) {
    auto enc = p->Encode(u.data(), len, 0.2);  // weight 0.2 each: total 0.6
    for (size_t j = 0; j < acc.size(); ++j) acc[j] += enc[j];
  }
  ASSERT_TRUE(p->DecodeSum(acc, len, 3, 0.6).ok());
  ASSERT_TRUE(p->DecodeSum(acc, len, 3).ok());
  // One value pushed past what three weight-0.2 contributors can reach, still inside its slot.
  auto bumped = acc;
  bumped[0] += mpz_class(40000);  // slot 0: +1.22 in value units, more than the range allows
  auto r = p->DecodeSum(bumped, len, 3, 0.6);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("holds value 0"), std::string::npos) << r.status().message();
  // Padding (value 150 onwards lives in plaintext 1's slot 43) must stay zero.
  auto padded = acc;
  padded[1] += mpz_class(1) << (p->slot_bits() * 50);
  r = p->DecodeSum(padded, len, 3, 0.6);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("padding slot 50"), std::string::npos)
      << r.status().message();
  // Random plaintexts below a 2048-bit n: none of 200 passes.
  mpz_class n = (mpz_class(1) << 2047) + 12345;
  int passed = 0;
  for (int i = 0; i < 200; ++i) {
    std::vector<mpz_class> junk = {RandomBelow(n), RandomBelow(n)};
    passed += p->DecodeSum(junk, len, 3, 0.6).ok();
  }
  EXPECT_EQ(passed, 0);
}

SecureAggregatorOptions Small() {
  SecureAggregatorOptions o;
  o.key_bits = 1024;
  o.insecure_for_testing = true;
  o.clip = 4.0;
  return o;
}

// The three encryptions compute the same integer sums: their means are identical bit for bit,
// and within the stated quantisation bound of the exact float mean of the clipped values.
TEST(SecureAggregatorTest, EveryEncryptionGivesTheSameMeanWithinTheBound) {
  auto ups = RandomUpdates(5, 2500, 5.0f, 3);  // some beyond the clip (4); two mask blocks
  ups[0][0] = 4.0f;
  ups[1][0] = 4.0f;
  std::vector<double> weights = {100, 250, 50, 400, 200};
  for (bool weighted : {false, true}) {
    SCOPED_TRACE(weighted ? "weighted" : "unweighted");
    const std::vector<double> w = weighted ? weights : std::vector<double>{};
    std::vector<double> exact(ups[0].size(), 0.0);
    for (size_t i = 0; i < ups.size(); ++i) {
      const double scale = weighted ? weights[i] / 1000.0 : 1.0;
      for (size_t j = 0; j < exact.size(); ++j)
        exact[j] += std::clamp<double>(ups[i][j], -4.0, 4.0) * scale / (weighted ? 1.0 : 5.0);
    }
    std::vector<std::vector<float>> got;
    for (Encryption e : {kNone, kPaillier, kPaillierMasked}) {
      SecureAggregatorOptions o = Small();
      o.encryption = e;
      SecureAggregator agg(o);
      AggregateStats stats;
      auto mean = agg.Aggregate(ups, w, {}, &stats);
      ASSERT_TRUE(mean.ok()) << SchemeName(SchemeOf(e)) << ": " << mean.status().message();
      const double bound = *agg.ErrorBound(5) / (weighted ? 1.0 : 5.0);
      for (size_t j = 0; j < exact.size(); ++j)
        ASSERT_NEAR((*mean)[j], exact[j], bound + 1e-6) << SchemeName(SchemeOf(e)) << " " << j;
      got.push_back(*mean);
      if (e == kNone) {
        EXPECT_EQ(stats.ciphertexts_decrypted, 0);
        EXPECT_TRUE(stats.decrypting_parties.empty());
      } else {
        EXPECT_EQ(stats.decrypting_parties, (std::vector<int>{1, 2, 3}));
      }
      if (e == kPaillier) {
        EXPECT_EQ(stats.ciphertexts_decrypted, (2500 + (1023 / 19) - 1) / (1023 / 19));
      }
      if (e == kPaillierMasked) {
        EXPECT_EQ(stats.masked_per_party, 2 * 2048);
        EXPECT_LE(stats.ciphertexts_decrypted, 64);  // the mask key only
      }
    }
    EXPECT_EQ(got[0], got[1]);
    EXPECT_EQ(got[0], got[2]);
  }
}

TEST(SecureAggregatorTest, BadSharesAreRejectedAndNamed) {
  auto ups = RandomUpdates(4, 200, 1.0f, 9);
  SecureAggregatorOptions o = Small();
  o.encryption = kPaillier;
  for (int pass = 0; pass < 2; ++pass, o.encryption = kPaillierMasked) {
    SCOPED_TRACE(SchemeName(SchemeOf(o.encryption)));
    SecureAggregator agg(o);
    // Party 2 cheats; parties 1, 2, 4, 5 answer: the round still completes with 1, 4, 5.
    RoundControl ctl;
    ctl.responders = {1, 2, 4, 5};
    ctl.tamper = [](PartialDecryption& p) {
      if (p.index == 2) p.shares[1] = p.shares[1] + 1;  // any change to one share
    };
    AggregateStats stats;
    auto got = agg.Aggregate(ups, {}, ctl, &stats);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(stats.decrypting_parties, (std::vector<int>{1, 4, 5}));
    ASSERT_EQ(stats.rejected.size(), 1u);
    EXPECT_NE(stats.rejected[0].find("party 2"), std::string::npos);
    // Only parties 1 and 2 answer, and 2 cheats: fewer than threshold valid shares.
    ctl.responders = {1, 2, 3};
    ctl.tamper = [](PartialDecryption& p) {
      if (p.index == 3) p.proof.z += 1;
    };
    auto fail = agg.Aggregate(ups, {}, ctl, &stats);
    ASSERT_FALSE(fail.ok());
    EXPECT_NE(fail.status().message().find("only 2 parties gave valid shares, 3 are needed"),
              std::string::npos)
        << fail.status().message();
    EXPECT_NE(fail.status().message().find("party 3"), std::string::npos);
  }
}

TEST(SecureAggregatorTest, InputErrors) {
  SecureAggregator agg(Small());
  EXPECT_FALSE(agg.Aggregate({}).ok());
  EXPECT_FALSE(agg.Aggregate({{1, 2}, {1}}).ok());
  EXPECT_FALSE(agg.Aggregate(RandomUpdates(6, 3, 1, 1)).ok());  // more than participant_count
  EXPECT_FALSE(agg.Aggregate({{1}, {2}}, {1, -1}).ok());
  SecureAggregatorOptions o = Small();
  o.threshold = 6;
  EXPECT_FALSE(SecureAggregator::Create(o).ok());
  o = Small();
  o.insecure_for_testing = false;  // 1024-bit keys are refused for real use
  EXPECT_FALSE(SecureAggregator::Create(o).ok());
  // A mask that cannot decode 5 summands of 16-bit values exactly is refused before any key is
  // dealt, naming the numbers.
  o = Small();
  o.mask.log_q = 20;
  auto bad = SecureAggregator::Create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("20"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace ronghe::crypto

namespace ronghe::crypto {
namespace {

// The mission's spelling of the API compiles and runs as written (2048-bit keys).
TEST(SecureAggregatorTest, MissionSpelling) {
  std::vector<std::vector<float>> updates = {
      {0.5f, -0.25f}, {0.1f, 0.2f}, {-0.3f, 0.0f}, {0.0f, 0.9f}, {0.2f, 0.2f}};
  auto mean = SecureAggregator({.encryption = kPaillier, .participant_count = 5, .threshold = 3})
                  .Aggregate(updates);
  ASSERT_TRUE(mean.ok()) << mean.status().message();
  EXPECT_NEAR((*mean)[0], 0.1f, 1e-4);
  EXPECT_NEAR((*mean)[1], 0.21f, 1e-4);
}

}  // namespace
}  // namespace ronghe::crypto
