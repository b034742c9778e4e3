#include "ronghe/fed/consortium.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"
#include "ronghe/crypto/keyfile.h"
#include "ronghe/tls/x509.h"

namespace ronghe::fed {
namespace {

const char* kConfig = R"(
[consortium]
id = "fraud-consortium"
parties = ["bank-north", "bank-south", "bank-east", "bank-west", "bank-central"]
threshold = 3
key_bits = 2048

[coordinator]
address = "127.0.0.1:50051"
hosts = ["localhost", "127.0.0.1"]
)";

Result<ConsortiumOptions> Parse(const std::string& text) {
  ASSIGN_OR_RETURN(Config cfg, Config::Parse(text, "consortium.toml"));
  ConsortiumOptions o;
  RETURN_IF_ERROR(ParseConsortiumOptions(cfg, &o));
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  return o;
}

mode_t Mode(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0;
}

TEST(ConsortiumTest, InitWritesVerifiableBundles) {
  auto o = Parse(kConfig);
  ASSERT_TRUE(o.ok()) << o.status().message();
  std::string out = ::testing::TempDir() + "/ronghe-consortium";
  std::filesystem::remove_all(out);
  ASSERT_TRUE(InitConsortium(*o, kConfig, out).ok());
  std::string ca = *ReadFile(out + "/ca/ca.pem");
  EXPECT_EQ(Mode(out + "/ca/ca-key.pem"), 0600u);
  auto pub = crypto::LoadPublicKey(out + "/coordinator/public.json");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ((*pub)->parties(), 5);
  EXPECT_EQ((*pub)->threshold(), 3);
  EXPECT_EQ(*tls::VerifyLeaf(ca, *ReadFile(out + "/coordinator/cert.pem"),
                             *ReadFile(out + "/coordinator/key.pem")),
            "coordinator");
  for (size_t i = 0; i < o->parties.size(); ++i) {
    std::string dir = out + "/" + o->parties[i];
    EXPECT_EQ(Mode(dir), 0700u);
    EXPECT_EQ(Mode(dir + "/key.pem"), 0600u);
    EXPECT_EQ(Mode(dir + "/share.json"), 0600u);
    EXPECT_EQ(*tls::VerifyLeaf(ca, *ReadFile(dir + "/cert.pem"), *ReadFile(dir + "/key.pem")),
              o->parties[i]);
    auto share = crypto::LoadShare(dir + "/share.json", pub->get());
    ASSERT_TRUE(share.ok()) << share.status().message();
    EXPECT_EQ(share->share.index, static_cast<int>(i) + 1);
    auto id = nlohmann::json::parse(*ReadFile(dir + "/identity.json"));
    EXPECT_EQ(id["index"], static_cast<int>(i) + 1);
    EXPECT_EQ(id["key_fingerprint"], (*pub)->fingerprint());
    EXPECT_EQ(*ReadFile(dir + "/consortium.toml"), kConfig);
    // A bank's bundle holds its own share only.
    EXPECT_FALSE(FileExists(dir + "/ca-key.pem"));
  }
  EXPECT_FALSE(FileExists(out + "/coordinator/share.json"));  // the coordinator can decrypt nothing
  Status again = InitConsortium(*o, kConfig, out);
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
}

TEST(ConsortiumTest, ConfigErrorsNameTheKey) {
  auto bad = Parse(std::string(kConfig) + "\n[extra]\nx = 1\n");
  EXPECT_NE(bad.status().message().find("unknown key 'extra.x'"), std::string::npos);
  auto t = Parse(R"([consortium]
id = "c"
parties = ["a", "b"]
threshold = 3
)");
  EXPECT_NE(t.status().message().find("consortium.threshold"), std::string::npos)
      << t.status().message();
  auto dup = Parse(R"([consortium]
id = "c"
parties = ["a", "a"]
threshold = 1
)");
  EXPECT_NE(dup.status().message().find("appears twice"), std::string::npos);
  auto missing = Parse("[consortium]\nid = \"c\"\n");
  EXPECT_NE(missing.status().message().find("consortium.parties"), std::string::npos);
  // The schema: all of it or none, each field checked.
  const std::string base = "[consortium]\nid = \"c\"\nparties = [\"a\"]\nthreshold = 1\n";
  auto ok = Parse(base + "[schema]\ninput_shape = [3, 8]\noutputs = 4\ntask = \"multiclass\"\n");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->schema.ToString(), "input_shape [3, 8], outputs 4, task multiclass");
  for (auto [text, key] : std::vector<std::pair<std::string, std::string>>{
           {"[schema]\noutputs = 1\ntask = \"binary\"\n", "schema.input_shape"},
           {"[schema]\ninput_shape = [0]\noutputs = 1\ntask = \"binary\"\n", "schema.input_shape"},
           {"[schema]\ninput_shape = [4]\noutputs = 2\ntask = \"binary\"\n", "schema.outputs"},
           {"[schema]\ninput_shape = [4]\noutputs = 1\ntask = \"rank\"\n", "schema.task"}}) {
    auto r = Parse(base + text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace ronghe::fed
