#include "ronghe/crypto/encoding.h"

#include <gtest/gtest.h>

#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {
namespace {

TEST(EncodingTest, FixedWidthRoundTrip) {
  std::vector<mpz_class> v = {mpz_class(0), mpz_class(1), RandomBits(1000), RandomBits(1024)};
  std::string bytes = EncodeFixedWidth(v, 128);
  EXPECT_EQ(bytes.size(), 4u * 128);
  auto back = DecodeFixedWidth(bytes, 128, 4, "test");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, v);
  auto wrong = DecodeFixedWidth(bytes, 128, 5, "party x: upload");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("party x: upload"), std::string::npos);
  EXPECT_FALSE(DecodeFixedWidth(bytes.substr(1), 128, 4, "t").ok());
  EXPECT_FALSE(DecodeFixedWidth(bytes, 0, 4, "t").ok());
}

TEST(EncodingTest, ProofRoundTripAtMinimalLength) {
  EqualityProof p{RandomBits(256), RandomBits(3000)};
  EncodedProof e = EncodeProof(p);
  EXPECT_EQ(e.e.size(), ByteLength(p.e));
  EqualityProof back = DecodeProof(e.e, e.z);
  EXPECT_EQ(back.e, p.e);
  EXPECT_EQ(back.z, p.z);
  EncodedProof zero = EncodeProof({0, 0});
  EXPECT_TRUE(zero.e.empty());
  EXPECT_EQ(DecodeProof(zero.e, zero.z).z, 0);
}

}  // namespace
}  // namespace ronghe::crypto
