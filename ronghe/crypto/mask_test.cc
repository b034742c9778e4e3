#include "ronghe/crypto/mask.h"

#include <gtest/gtest.h>

#include <random>

namespace ronghe::crypto {
namespace {

MaskSeed SeedOf(uint8_t v) {
  MaskSeed s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(v + i);
  return s;
}

struct Summed {
  std::vector<uint64_t> y;
  std::vector<int64_t> s;
};

Summed SealAndSum(const Masker& m, const std::vector<std::vector<int32_t>>& xs,
                  const MaskSeed& seed) {
  Summed sum;
  for (const auto& x : xs) {
    auto sealed = m.Seal(x.data(), static_cast<int64_t>(x.size()), seed).value();
    if (sum.y.empty()) {
      sum.y.assign(sealed.y.size(), 0);
      sum.s.assign(sealed.s.size(), 0);
    }
    for (size_t i = 0; i < sum.y.size(); ++i)
      sum.y[i] = (sum.y[i] + sealed.y[i]) & ((1ull << m.options().log_q) - 1);
    for (size_t i = 0; i < sum.s.size(); ++i) sum.s[i] += sealed.s[i];
  }
  return sum;
}

// The declared maximum of parties, every value at the clip bound (both signs), and random values:
// the sum comes back exactly, padding included.
TEST(MaskTest, ExactSumAtTheExtremes) {
  auto m = Masker::Create({});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const int64_t len = 5000;  // three blocks of 2048, the last mostly padding
  const int32_t qmax = static_cast<int32_t>(m->qmax());
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> u(-qmax, qmax);
  for (int pattern = 0; pattern < 3; ++pattern) {
    std::vector<std::vector<int32_t>> xs(m->options().max_summands, std::vector<int32_t>(len));
    for (auto& x : xs)
      for (auto& v : x) v = pattern == 0 ? qmax : pattern == 1 ? -qmax : u(rng);
    Summed sum = SealAndSum(*m, xs, SeedOf(7));
    auto got = m->Unmask(sum.y, sum.s, len, static_cast<int>(xs.size()), SeedOf(7));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    for (int64_t i = 0; i < len; ++i) {
      int64_t want = 0;
      for (const auto& x : xs) want += x[i];
      ASSERT_EQ((*got)[i], want) << "pattern " << pattern << " value " << i;
    }
  }
}

// Secrets and errors are fresh on every seal: the same input sealed twice shares nothing.
TEST(MaskTest, EverySealDrawsAFreshSecret) {
  auto m = Masker::Create({});
  ASSERT_TRUE(m.ok());
  std::vector<int32_t> x(100, 3);
  auto a = m->Seal(x.data(), 100, SeedOf(1)).value();
  auto b = m->Seal(x.data(), 100, SeedOf(1)).value();
  EXPECT_NE(a.s, b.s);
  EXPECT_NE(a.y, b.y);
  for (int64_t v : a.s) ASSERT_LE(std::abs(v), m->options().eta);
}

// What is not a sum of seals fails the decoder's checks: a party's y replaced by random values,
// a wrong secret sum, a secret sum out of range, the wrong seed.
TEST(MaskTest, GarbageFailsTheChecks) {
  auto m = Masker::Create({});
  ASSERT_TRUE(m.ok());
  const int64_t len = 3000;
  std::vector<std::vector<int32_t>> xs(3, std::vector<int32_t>(len, 100));
  Summed sum = SealAndSum(*m, xs, SeedOf(2));
  ASSERT_TRUE(m->Unmask(sum.y, sum.s, len, 3, SeedOf(2)).ok());
  std::mt19937_64 rng(9);
  auto junk = sum;
  for (auto& v : junk.y) v = rng() & 0xffffffffull;
  auto r = m->Unmask(junk.y, junk.s, len, 3, SeedOf(2));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a sum of 3 sealed updates"), std::string::npos)
      << r.status().message();
  auto wrong_s = sum;
  wrong_s.s[0] += 1;
  EXPECT_FALSE(m->Unmask(wrong_s.y, wrong_s.s, len, 3, SeedOf(2)).ok());
  auto big_s = sum;
  big_s.s[5] = 10000;
  EXPECT_FALSE(m->Unmask(big_s.y, big_s.s, len, 3, SeedOf(2)).ok());
  EXPECT_FALSE(m->Unmask(sum.y, sum.s, len, 3, SeedOf(3)).ok());
  EXPECT_FALSE(m->Unmask(sum.y, sum.s, len, 3, SeedOf(2), 200).ok());  // 300 > the range given
}

TEST(MaskTest, ParametersThatCannotDecodeOrAreInsecureAreRefused) {
  auto r = Masker::Create({.n = 2048, .log_q = 24, .value_bits = 16, .max_summands = 64});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot decode exactly: 64 parties of 16-bit values"),
            std::string::npos)
      << r.status().message();
  EXPECT_FALSE(Masker::Create({.n = 512}).ok());
  EXPECT_FALSE(Masker::Create({.n = 1024, .log_q = 32}).ok());  // 27 bits at most for N = 1024
  EXPECT_FALSE(Masker::Create({.n = 2048, .log_q = 60}).ok());
  EXPECT_TRUE(Masker::Create({.n = 4096, .log_q = 36, .value_bits = 16, .max_summands = 64}).ok());
}

}  // namespace
}  // namespace ronghe::crypto
