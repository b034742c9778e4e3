#include "ronghe/crypto/keyfile.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"

namespace ronghe::crypto {
namespace {

ThresholdKeys Deal() {
  DealerOptions o;
  o.bits = 2048;
  o.parties = 5;
  o.threshold = 3;
  return std::move(DealThresholdKeys(o)).value();
}

const ThresholdKeys& KeysA() {
  static ThresholdKeys* k = new ThresholdKeys(Deal());
  return *k;
}

std::string Dir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/ronghe-keys-" + name;
  std::filesystem::remove_all(d);
  return d;
}

TEST(KeyFileTest, WriteLoadRoundTripAndModes) {
  std::string dir = Dir("rt");
  ASSERT_TRUE(WriteThresholdKeys(dir, KeysA()).ok());
  struct stat st;
  ASSERT_EQ(::stat((dir + "/party-1.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto pub = LoadPublicKey(dir + "/public.json");
  ASSERT_TRUE(pub.ok()) << pub.status().message();
  EXPECT_EQ((*pub)->fingerprint(), KeysA().public_key->fingerprint());
  for (int i = 1; i <= 5; ++i) {
    auto s = LoadShare(dir + "/party-" + std::to_string(i) + ".json", pub->get());
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_EQ(s->share.s, KeysA().shares[i - 1].s);
  }
  // Never overwritten.
  Status again = WriteThresholdKeys(dir, KeysA());
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
  // The public file holds no secret.
  std::string text = *ReadFile(dir + "/public.json");
  EXPECT_EQ(text.find(KeysA().shares[0].s.get_str(16)), std::string::npos);
}

// Found by keyfile_fuzz: a known key holding the wrong JSON type threw out of the parser.
TEST(KeyFileTest, FieldsOfTheWrongTypeAreRefusedNotThrown) {
  for (const char* text :
       {R"({"format": {"bits": 2048}, "index": 3})", R"({"format": 7})", R"([1, 2])"}) {
    auto share = ParseShare(text, "share.json");
    ASSERT_FALSE(share.ok()) << text;
    EXPECT_NE(share.status().message().find("share.json"), std::string::npos);
    auto pub = ParsePublicKey(text, "public.json");
    ASSERT_FALSE(pub.ok()) << text;
  }
}

TEST(KeyFileTest, BadFilesAreRefusedWithTheFileNamed) {
  std::string dir = Dir("bad");
  ASSERT_TRUE(WriteThresholdKeys(dir, KeysA()).ok());
  std::string pub_text = *ReadFile(dir + "/public.json");
  std::string share_text = *ReadFile(dir + "/party-2.json");
  auto expect_bad = [&](const std::string& content, bool share, const std::string& needle) {
    std::string p = dir + "/x.json";
    ASSERT_TRUE(WriteFileAtomic(p, content).ok());
    Status s = share ? LoadShare(p).status() : LoadPublicKey(p).status();
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  expect_bad(pub_text.substr(0, pub_text.size() / 2), false, "not valid JSON");
  expect_bad("{}", false, "not a ronghe threshold Paillier public key");
  auto j = nlohmann::json::parse(pub_text);
  j["version"] = 2;
  expect_bad(j.dump(), false, "version 2");
  j = nlohmann::json::parse(pub_text);
  j["threshold"] = 2;
  expect_bad(j.dump(), false, "fingerprint");
  j = nlohmann::json::parse(pub_text);
  j["n"] = "zz";
  expect_bad(j.dump(), false, "not a hex number");
  j = nlohmann::json::parse(pub_text);
  j["verification_keys"].erase(0);
  expect_bad(j.dump(), false, "verification keys");
  // A share whose secret was altered no longer matches its verification key.
  auto sj = nlohmann::json::parse(share_text);
  std::string s = sj["share"];
  s.back() = s.back() == '0' ? '1' : '0';
  sj["share"] = s;
  expect_bad(sj.dump(), true, "does not match the verification key");
  // A share of another key.
  ThresholdKeys other = Deal();
  std::string p = dir + "/foreign.json";
  ASSERT_TRUE(WriteFileAtomic(p, ShareJson(*other.public_key, other.shares[0]), 0600).ok());
  auto foreign = LoadShare(p, KeysA().public_key.get());
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.status().message().find("belongs to key"), std::string::npos);
  // A share claiming another party's index.
  sj = nlohmann::json::parse(share_text);
  sj["index"] = 3;
  expect_bad(sj.dump(), true, "share 3");
}

}  // namespace
}  // namespace ronghe::crypto
