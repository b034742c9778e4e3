#include "ronghe/fed/wire.h"

#include <gtest/gtest.h>

#include "ronghe/crypto/bigint.h"

namespace ronghe::fed {
namespace {

TEST(WireTest, FloatsRefuseWrongLengthAndNonFinite) {
  std::vector<float> v = {1.5f, -2.0f, 0.0f};
  auto back = DecodeFloats(EncodeFloats(v), 3, "t");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, v);
  EXPECT_FALSE(DecodeFloats(EncodeFloats(v), 4, "t").ok());
  v[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(DecodeFloats(EncodeFloats(v), 3, "t").ok());
}

TEST(WireTest, ChunksReassembleInOrderOnly) {
  std::string payload(10000, 'x');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  auto chunks = SplitPayload(v1::UPLOAD, payload, 3000);
  ASSERT_EQ(chunks.size(), 4u);
  Reassembler r(v1::UPLOAD, 20000);
  for (auto& c : chunks) ASSERT_TRUE(r.Add(c, "t").ok());
  ASSERT_TRUE(r.complete());
  EXPECT_EQ(r.Take(), payload);

  Reassembler skip(v1::UPLOAD, 20000);
  ASSERT_TRUE(skip.Add(chunks[0], "t").ok());
  EXPECT_FALSE(skip.Add(chunks[2], "t").ok());  // a missing chunk is an error, not a hole

  Reassembler small(v1::UPLOAD, 5000);  // oversized payloads stop at the limit
  Status st;
  for (auto& c : chunks)
    if (st.ok()) st = small.Add(c, "bank-west's upload");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("bank-west"), std::string::npos);

  Reassembler kind(v1::PARTIAL, 20000);
  EXPECT_FALSE(kind.Add(chunks[0], "t").ok());

  v1::Chunk huge = chunks[0];
  huge.set_count(1u << 30);  // a declared count no payload under the limit needs
  Reassembler r2(v1::UPLOAD, 20000);
  EXPECT_FALSE(r2.Add(huge, "t").ok());
}

TEST(WireTest, EmptyPayloadIsOneChunk) {
  auto chunks = SplitPayload(v1::ROUND_TASK, "", 100);
  ASSERT_EQ(chunks.size(), 1u);
  Reassembler r(v1::ROUND_TASK, 100);
  ASSERT_TRUE(r.Add(chunks[0], "t").ok());
  EXPECT_TRUE(r.complete());
}

TEST(WireTest, NoncesAreFreshAndSixteenBytes) {
  std::string a = NewNonce(), b = NewNonce();
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace ronghe::fed
