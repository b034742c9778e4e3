#include "ronghe/data/idx.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include "ronghe/base/file.h"

namespace ronghe::data {
namespace {

std::string WriteGz(const std::string& name, const std::string& bytes) {
  std::string p = ::testing::TempDir() + "/" + name;
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return p;
}

std::string Header(uint8_t type, std::vector<uint32_t> dims) {
  std::string h = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((d >> s) & 0xff));
  }
  return h;
}

TEST(IdxTest, ReadsShapeAndData) {
  std::string data =
      Header(8, {2, 2, 3}) + std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\xff", 12);
  auto t = ReadIdx(WriteGz("ok.idx.gz", data));
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->sizes(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(t->index({1, 1, 2}).item<uint8_t>(), 255);
  // Plain (not gzipped) IDX reads too.
  std::string plain = ::testing::TempDir() + "/plain.idx";
  ASSERT_TRUE(WriteFileAtomic(plain, data).ok());
  EXPECT_TRUE(ReadIdx(plain).ok());
}

TEST(IdxTest, RejectsCorruptFiles) {
  auto truncated =
      ReadIdx(WriteGz("short.idx.gz", Header(8, {10, 28, 28}) + std::string(100, 'a')));
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(truncated.status().message().find("short.idx.gz: truncated"), std::string::npos);
  EXPECT_FALSE(ReadIdx(WriteGz("magic.idx.gz", "\x01\x02\x08\x01xxxx")).ok());
  EXPECT_FALSE(ReadIdx(WriteGz("type.idx.gz", Header(0x0d, {1}) + "abcd")).ok());
  EXPECT_FALSE(ReadIdx(WriteGz("extra.idx.gz", Header(8, {2}) + "abc")).ok());
  EXPECT_EQ(ReadIdx("/nonexistent.gz").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ronghe::data
