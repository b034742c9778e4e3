#include "ronghe/crypto/ring.h"

#include <gmpxx.h>
#include <gtest/gtest.h>

#include <random>

namespace ronghe::crypto {
namespace {

TEST(RingTest, ThePrimeSupportsNegacyclicNttsUpTo4096) {
  mpz_class p(std::to_string(NegacyclicRing::kPrime));
  EXPECT_GT(mpz_probab_prime_p(p.get_mpz_t(), 40), 0);
  EXPECT_EQ(NegacyclicRing::kPrime % 8192, 1u);
  EXPECT_LT(NegacyclicRing::kPrime, 1ull << 62);
}

// (1 + 2X + 3X^2 + 4X^3)(1 + X^3) in Z_q[X]/(X^4 + 1), by hand: X^3 * a = -2 - 3X - 4X^2 + X^3.
TEST(RingTest, KnownAnswer) {
  auto ring = NegacyclicRing::Create(4, 32, 1);
  ASSERT_TRUE(ring.ok()) << ring.status().ToString();
  std::vector<uint64_t> a = {1, 2, 3, 4}, out(4), scratch(4);
  std::vector<int64_t> s = {1, 0, 0, 1};
  ring->MultiplyBySecret(a.data(), ring->TransformSecret(s), out.data(), scratch.data());
  const uint64_t q = 1ull << 32;
  EXPECT_EQ(out, (std::vector<uint64_t>{q - 1, q - 1, q - 1, 5}));
  EXPECT_EQ(NegacyclicRing::SchoolbookProduct(a, s, 32), out);
}

// The NTT product equals the schoolbook product on random inputs at the sizes the scheme uses,
// including the extremes: a at q - 1, s at +-max.
TEST(RingTest, NttProductEqualsSchoolbook) {
  std::mt19937_64 rng(42);
  for (auto [n, log_q, bound] : std::vector<std::tuple<int, int, int64_t>>{
           {8, 32, 3}, {2048, 32, 21}, {2048, 40, 64}, {4096, 32, 21}}) {
    SCOPED_TRACE(std::to_string(n) + " " + std::to_string(log_q));
    auto ring = NegacyclicRing::Create(n, log_q, bound);
    ASSERT_TRUE(ring.ok()) << ring.status().ToString();
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<uint64_t> a(n), out(n), scratch(n);
      std::vector<int64_t> s(n);
      std::uniform_int_distribution<int64_t> small(-bound, bound);
      for (int i = 0; i < n; ++i) {
        a[i] = trial == 2 ? ring->mask() : rng() & ring->mask();
        s[i] = trial == 2 ? (i % 2 ? bound : -bound) : small(rng);
      }
      ring->MultiplyBySecret(a.data(), ring->TransformSecret(s), out.data(), scratch.data());
      ASSERT_EQ(out, NegacyclicRing::SchoolbookProduct(a, s, log_q)) << "trial " << trial;
    }
  }
}

TEST(RingTest, ParametersBeyondTheExactRangeAreRefusedNamingThem) {
  auto r = NegacyclicRing::Create(4096, 50, 1024);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("N = 4096, log q = 50"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(NegacyclicRing::Create(3000, 32, 1).ok());
  EXPECT_FALSE(NegacyclicRing::Create(8192, 32, 1).ok());
}

}  // namespace
}  // namespace ronghe::crypto
