#include "ronghe/crypto/threshold.h"

#include <gtest/gtest.h>

#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {
namespace {

const ThresholdKeys& Keys() {
  static ThresholdKeys* k = [] {
    DealerOptions o;
    o.bits = 1024;
    o.parties = 5;
    o.threshold = 3;
    o.insecure_for_testing = true;
    return new ThresholdKeys(std::move(DealThresholdKeys(o)).value());
  }();
  return *k;
}

std::vector<std::vector<int>> Subsets(int n, int k) {
  std::vector<std::vector<int>> out;
  for (int mask = 0; mask < (1 << n); ++mask) {
    if (__builtin_popcount(mask) != k) continue;
    std::vector<int> s;
    for (int i = 0; i < n; ++i)
      if (mask & (1 << i)) s.push_back(i + 1);
    out.push_back(s);
  }
  return out;
}

TEST(ThresholdTest, SharesMatchVerificationKeys) {
  const auto& k = Keys();
  for (const auto& s : k.shares) EXPECT_TRUE(CheckShare(*k.public_key, s).ok());
  KeyShare forged = k.shares[0];
  forged.s += 1;
  Status st = CheckShare(*k.public_key, forged);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("share 1"), std::string::npos);
}

TEST(ThresholdTest, EveryThreeOfFiveDecryptsNoTwoDo) {
  const auto& k = Keys();
  const auto& pub = *k.public_key;
  mpz_class m = RandomBelow(pub.paillier().n());
  mpz_class c = pub.paillier().Encrypt(m);
  std::vector<PartialDecryption> parts;
  for (const auto& s : k.shares) {
    auto p = PartialDecrypt(pub, s, {c});
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE(VerifyPartial(pub, {c}, *p).ok());
    parts.push_back(*p);
  }
  for (int size : {3, 4, 5}) {
    for (const auto& subset : Subsets(5, size)) {
      std::vector<mpz_class> shares;
      for (int i : subset) shares.push_back(parts[i - 1].shares[0]);
      auto r = Combine(pub, subset, shares);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(*r, m) << "subset size " << size;
    }
  }
  for (const auto& subset : Subsets(5, 2)) {
    std::vector<mpz_class> shares;
    for (int i : subset) shares.push_back(parts[i - 1].shares[0]);
    EXPECT_FALSE(Combine(pub, subset, shares).ok());
    // Forcing a "combine" of two shares with a made-up third gives garbage, not m.
    std::vector<int> idx = subset;
    int other = 1;
    while (std::find(idx.begin(), idx.end(), other) != idx.end()) ++other;
    idx.push_back(other);
    shares.push_back(pub.paillier().Encrypt(0));
    EXPECT_NE(*Combine(pub, idx, shares), m);
  }
}

TEST(ThresholdTest, BatchOfSumsDecryptsAndTamperingIsCaught) {
  const auto& k = Keys();
  const auto& pub = *k.public_key;
  const auto& pk = pub.paillier();
  const int kLen = 40;
  std::vector<mpz_class> plain(kLen, 0), cts(kLen);
  for (int j = 0; j < kLen; ++j) cts[j] = pk.Encrypt(0);
  for (int party = 0; party < 10; ++party) {  // homomorphic sum of ten parties' vectors
    for (int j = 0; j < kLen; ++j) {
      mpz_class m = RandomBits(100);
      plain[j] += m;
      cts[j] = pk.Add(cts[j], pk.Encrypt(m));
    }
  }
  std::vector<PartialDecryption> parts;
  for (int i : {2, 4, 5}) {
    auto p = PartialDecrypt(pub, k.shares[i - 1], cts);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(VerifyPartial(pub, cts, *p).ok());
    parts.push_back(*p);
  }
  auto sums = CombineVector(pub, parts);
  ASSERT_TRUE(sums.ok());
  for (int j = 0; j < kLen; ++j) EXPECT_EQ((*sums)[j], plain[j]);

  // One tampered share in the batch: the batch proof fails and names the party.
  PartialDecryption bad = parts[1];
  bad.shares[17] = bad.shares[17] * bad.shares[17] % pk.n2();
  Status s = VerifyPartial(pub, cts, bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("party 4"), std::string::npos) << s.message();
  // A share multiplied by -1 (order 2) is caught as well, thanks to the squarings.
  bad = parts[1];
  bad.shares[3] = pk.n2() - bad.shares[3];
  EXPECT_FALSE(VerifyPartial(pub, cts, bad).ok());
  // Honest shares under another party's index fail.
  bad = parts[1];
  bad.index = 1;
  EXPECT_FALSE(VerifyPartial(pub, cts, bad).ok());
  // A proof replayed for other ciphertexts fails.
  std::vector<mpz_class> other = cts;
  other[0] = pk.Rerandomize(other[0]);
  EXPECT_FALSE(VerifyPartial(pub, other, parts[0]).ok());
  // Single-share proof: a tampered share is rejected.
  auto single = PartialDecrypt(pub, k.shares[0], {cts[0]});
  single->shares[0] = pk.Add(single->shares[0], pk.Encrypt(1));
  EXPECT_FALSE(VerifyPartial(pub, {cts[0]}, *single).ok());
  // Too few parties.
  parts.pop_back();
  auto few = CombineVector(pub, parts);
  ASSERT_FALSE(few.ok());
  EXPECT_NE(few.status().message().find("3 are needed"), std::string::npos);
}

TEST(ThresholdTest, MultiExpMatchesNaive) {
  const auto& pk = Keys().public_key->paillier();
  for (int n : {1, 3, 50, 300}) {
    std::vector<mpz_class> bases, exps;
    mpz_class want = 1;
    for (int j = 0; j < n; ++j) {
      bases.push_back(RandomUnit(pk.n2()));
      exps.push_back(RandomBits(128));
      want = want * Pow(bases.back(), exps.back(), pk.n2()) % pk.n2();
    }
    EXPECT_EQ(MultiExp(bases, exps, pk.n2(), 1), want) << n;
    EXPECT_EQ(MultiExp(bases, exps, pk.n2(), 2), want) << n;
  }
}

TEST(ThresholdTest, DealerValidatesAndKeysHaveExactSize) {
  DealerOptions o;
  o.threshold = 6;
  EXPECT_FALSE(DealThresholdKeys(o).ok());
  o.threshold = 3;
  o.bits = 1024;
  EXPECT_FALSE(DealThresholdKeys(o).ok());  // too small for real use
  o.bits = 2048;
  auto k = DealThresholdKeys(o);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->public_key->paillier().bits(), 2048);
  mpz_class m = 987654321;
  auto c = k->public_key->paillier().Encrypt(m);
  std::vector<PartialDecryption> parts;
  for (int i : {1, 3, 5}) parts.push_back(*PartialDecrypt(*k->public_key, k->shares[i - 1], {c}));
  EXPECT_EQ((*CombineVector(*k->public_key, parts))[0], m);
}

}  // namespace
}  // namespace ronghe::crypto
