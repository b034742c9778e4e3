// The hub against the attacks TUF names, over a hub directory: each test tampers with the hub the
// way an attacker (or a broken mirror) would and checks that the client refuses, naming why.
#include "ronghe/hub/hub.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/hub/attest.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/evidence.h"
#include "ronghe/hub/server.h"

namespace ronghe::hub {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string Slurp(const std::string& p) { return ReadFile(p).value(); }
void Spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Each test runs twice: clients reading the hub directory, and clients reading `hub serve` over
// HTTP (which serves the same, tampered, directory).
class HubTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = "/tmp/ronghe-hub-test-" +
           std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
           std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    hub_ = dir_ + "/hub";
    root_key_ = std::make_unique<SigningKey>(SigningKey::Generate().value());
    ASSERT_TRUE(InitHub(hub_, *root_key_, {}).ok());
    if (GetParam()) {
      HubServeOptions o;
      o.dir = hub_;
      o.host = "127.0.0.1";
      o.port = 0;
      o.refresh_every_s = 0;
      auto s = HubServer::Start(o);
      ASSERT_TRUE(s.ok()) << s.status().message();
      server_ = std::move(s).value();
    }
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  // A model version with files whose bytes tell them apart.
  Status PublishModel(const std::string& name, const std::string& version,
                      const SigningKey* key = nullptr) {
    const std::string src = dir_ + "/src-" + name + "-" + version;
    fs::create_directories(src);
    Spit(src + "/model.rhm", "weights of " + name + "@" + version + std::string(1000, 'w'));
    Spit(src + "/card.md", "# " + name + "\naccuracy 0.9\n");
    PublishRequest r;
    r.model_path = src + "/model.rhm";
    r.card_path = src + "/card.md";
    r.name = name;
    r.version = version;
    r.provenance = {{"run", 7}};
    return Publish(hub_, r, key ? *key : *root_key_);
  }

  std::unique_ptr<HubClient> Client(Clock::time_point now = Clock::now(),
                                    const std::string& trust = "trust") {
    ClientOptions o;
    o.hub = server_ ? "http://127.0.0.1:" + std::to_string(server_->port()) : hub_;
    o.trust_dir = dir_ + "/" + trust;
    o.now = now;
    auto c = HubClient::Open(o);
    EXPECT_TRUE(c.ok()) << c.status().message();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Re-signs snapshot and timestamp over whatever targets the hub now has: an attacker holding the
  // hub's online key (TUF assumes it can be stolen: it lives on the server).
  void ResignWithOnlineKey() { ASSERT_TRUE(Refresh(hub_).ok()); }

  std::string Meta(const std::string& f) { return hub_ + "/metadata/" + f; }

  std::string dir_, hub_;
  std::unique_ptr<SigningKey> root_key_;
  std::unique_ptr<HubServer> server_;
};

TEST_P(HubTest, PublishedModelsPullByteForByteAndVersionsOnlyGoUp) {
  ASSERT_TRUE(PublishModel("fraud-detector", "1.2.0").ok());
  ASSERT_TRUE(PublishModel("fraud-detector", "1.10.0").ok());
  ASSERT_TRUE(PublishModel("cnn", "1").ok());
  auto c = Client();
  ASSERT_TRUE(c->Update().ok());
  auto latest = c->Find("fraud-detector", "");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->version, "1.10.0");  // numeric, not string, order
  EXPECT_EQ(latest->publisher, root_key_->KeyId());
  auto old = c->Find("fraud-detector", "1.2.0");
  ASSERT_TRUE(old.ok());
  ASSERT_NE(old->File("model"), nullptr);
  ASSERT_TRUE(c->Download(*old->File("model"), dir_ + "/got.rhm").ok());
  EXPECT_EQ(Slurp(dir_ + "/got.rhm"), Slurp(dir_ + "/src-fraud-detector-1.2.0/model.rhm"));
  EXPECT_EQ(c->Read(*old->File("card")).value(), "# fraud-detector\naccuracy 0.9\n");
  EXPECT_NE(c->Find("fraud-detector", "9.9").status().message().find("1.2.0, 1.10.0"),
            std::string::npos);

  Status again = PublishModel("fraud-detector", "1.10.0");
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again.message();
  Status lower = PublishModel("fraud-detector", "1.3.0");
  EXPECT_NE(lower.message().find("versions only go up"), std::string::npos) << lower.message();
  EXPECT_FALSE(PublishModel("Bad/Name", "1").ok());
  EXPECT_FALSE(PublishModel("ok", "1.x").ok());
}

TEST_P(HubTest, FlippedBytesInArtifactCardOrTargetsMetadataAreRefused) {
  ASSERT_TRUE(PublishModel("m", "1.0.0").ok());
  auto c = Client();
  ASSERT_TRUE(c->Update().ok());
  auto m = c->Find("m", "1.0.0").value();
  auto flip = [](const std::string& path, size_t at) {
    std::string s = Slurp(path);
    s[at] ^= 0x01;
    Spit(path, s);
  };
  flip(hub_ + "/targets/m/1.0.0/model.rhm", 5);
  Status st = c->Download(*m.File("model"), dir_ + "/x.rhm");
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("tampered"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(dir_ + "/x.rhm"));  // nothing half-written is left
  flip(hub_ + "/targets/m/1.0.0/card.md", 2);
  EXPECT_EQ(c->Read(*m.File("card")).status().code(), StatusCode::kDataLoss);

  // The targets metadata itself: a byte flipped inside the signed part.
  const std::string t = Meta("2.targets.json");
  std::string s = Slurp(t);
  size_t at = s.find("m/1.0.0/card.md");
  ASSERT_NE(at, std::string::npos);
  s[at] = 'n';
  Spit(t, s);
  Status up = Client(Clock::now(), "fresh")->Update();
  EXPECT_EQ(up.code(), StatusCode::kDataLoss) << up.message();
  EXPECT_NE(up.message().find("2.targets.json: sha256 differs"), std::string::npos) << up.message();
}

TEST_P(HubTest, ReplayedOlderMetadataIsARollback) {
  ASSERT_TRUE(PublishModel("m", "1.0.0").ok());
  const std::string old_timestamp = Slurp(Meta("timestamp.json"));
  ASSERT_TRUE(PublishModel("m", "1.1.0").ok());
  auto c = Client();
  ASSERT_TRUE(c->Update().ok());
  ASSERT_TRUE(c->Find("m", "1.1.0").ok());
  // A mirror serves the older timestamp (and with it the older snapshot and targets).
  Spit(Meta("timestamp.json"), old_timestamp);
  Status st = Client()->Update();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("rollback"), std::string::npos) << st.message();

  // With the online key an attacker can sign a newer timestamp, but not make the client accept
  // an older snapshot or targets than it has seen.
  ASSERT_TRUE(Refresh(hub_).ok());  // the honest state again, newer timestamp
  ASSERT_TRUE(Client()->Update().ok());
  // Now rewrite the timestamp to point at snapshot version 2 (older), signed with the online key.
  auto online = SigningKey::Load(hub_ + "/keys/online.key").value();
  json ts = json::parse(Slurp(Meta("timestamp.json")))["signed"];
  const std::string snap2 = Slurp(Meta("2.snapshot.json"));
  ts["version"] = ts["version"].get<int64_t>() + 1;
  ts["meta"]["snapshot.json"] = {{"version", 2},
                                 {"length", static_cast<int64_t>(snap2.size())},
                                 {"hashes", {{"sha256", Sha256Hex(snap2)}}}};
  Spit(Meta("timestamp.json"), Canonical(SignEnvelope(ts, {&online}).value()));
  st = Client()->Update();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.message();
  EXPECT_NE(st.message().find("older than the trusted"), std::string::npos) << st.message();
}

TEST_P(HubTest, AnExpiredTimestampIsAFrozenHub) {
  ASSERT_TRUE(PublishModel("m", "1.0.0").ok());
  ASSERT_TRUE(Client()->Update().ok());
  // Eight days later nobody has re-signed the timestamp (7-day expiry).
  Status st = Client(Clock::now() + std::chrono::hours(24 * 8))->Update();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("timestamp.json: expired"), std::string::npos) << st.message();
  // `ronghe hub refresh` (or hub serve) re-signs it; an honest clock then accepts.
  ASSERT_TRUE(Refresh(hub_).ok());
  EXPECT_TRUE(Client()->Update().ok());
}

TEST_P(HubTest, TargetsSignedByAKeyNotInRootAreRefused) {
  ASSERT_TRUE(PublishModel("m", "1.0.0").ok());
  auto stranger = SigningKey::Generate().value();
  // The hub itself refuses a stranger's publish...
  Status st = PublishModel("m", "2.0.0", &stranger);
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied) << st.message();
  // ...and a client refuses targets metadata an attacker wrote and signed with it, even with
  // snapshot and timestamp re-signed by the stolen online key.
  json t = json::parse(Slurp(Meta("targets.json")))["signed"];
  t["version"] = t["version"].get<int64_t>() + 1;
  t["targets"]["m/1.0.0/model.rhm"]["hashes"]["sha256"] = std::string(64, 'a');
  json env = SignEnvelope(t, {&stranger}).value();
  const std::string text = Canonical(env);
  Spit(Meta(std::to_string(t["version"].get<int64_t>()) + ".targets.json"), text);
  Spit(Meta("targets.json"), text);
  ResignWithOnlineKey();
  st = Client()->Update();
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("0 valid targets signature(s), the threshold is 1"),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("the root does not trust"), std::string::npos) << st.message();
}

TEST_P(HubTest, RootRotationNeedsThresholdsOfOldAndNewKeysAndRevokesKeys) {
  auto publisher = SigningKey::Generate().value();
  auto new_root = SigningKey::Generate().value();
  RootChange add;
  add.grant = {{"targets", publisher.public_key()}};
  ASSERT_TRUE(UpdateRoot(hub_, add, {root_key_.get()}).ok());
  ASSERT_TRUE(PublishModel("m", "1.0.0", &publisher).ok());
  auto c = Client();
  ASSERT_TRUE(c->Update().ok());
  EXPECT_EQ(c->root().version, 2);

  // Rotating the root key needs the old root key and the new one.
  RootChange rotate;
  rotate.grant = {{"root", new_root.public_key()}};
  rotate.revoke = {{"root", root_key_->KeyId()}};
  Status only_new = UpdateRoot(hub_, rotate, {&new_root});
  EXPECT_EQ(only_new.code(), StatusCode::kPermissionDenied) << only_new.message();
  EXPECT_NE(only_new.message().find("against the old root"), std::string::npos);
  ASSERT_TRUE(UpdateRoot(hub_, rotate, {root_key_.get(), &new_root}).ok());
  // Then revoke the publisher (signed by the new root key alone: it is the root now).
  RootChange revoke;
  revoke.revoke = {{"targets", publisher.KeyId()}};
  Status old_key = UpdateRoot(hub_, revoke, {root_key_.get()});
  EXPECT_FALSE(old_key.ok()) << "the rotated-out root key must no longer sign roots";
  ASSERT_TRUE(UpdateRoot(hub_, revoke, {&new_root}).ok());
  // The revoked publisher's targets (the current ones) no longer verify: the client walks the
  // root chain 2 -> 3 -> 4 and refuses them.
  Status st = c->Update();
  EXPECT_EQ(c->root().version, 4);
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied) << st.message();
  // The root key re-signs the same targets, and clients accept them again.
  json t = json::parse(Slurp(Meta("targets.json")))["signed"];
  t["version"] = t["version"].get<int64_t>() + 1;
  RootChange grant_root;  // the new root key may publish
  grant_root.grant = {{"targets", new_root.public_key()}};
  ASSERT_TRUE(UpdateRoot(hub_, grant_root, {&new_root}).ok());
  const std::string text = Canonical(SignEnvelope(t, {&new_root}).value());
  Spit(Meta(std::to_string(t["version"].get<int64_t>()) + ".targets.json"), text);
  Spit(Meta("targets.json"), text);
  ResignWithOnlineKey();
  EXPECT_TRUE(c->Update().ok());

  // A forged next root signed only by a key the trusted root does not hold is refused.
  auto forger = SigningKey::Generate().value();
  Root forged = Root::FromJson(json::parse(Slurp(Meta("root.json")))["signed"]).value();
  forged.version += 1;
  forged.roles["root"] = {};
  forged.Grant("root", forger.public_key());
  Spit(Meta(std::to_string(forged.version) + ".root.json"),
       Canonical(SignEnvelope(forged.ToJson(), {&forger}).value()));
  st = c->Update();
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied) << st.message();
  EXPECT_NE(st.message().find(".root.json"), std::string::npos) << st.message();
}

// What a serving repository keeps (hub.json) verifies offline from the root it pinned, through
// a root rotation, and nothing else does: another hub's root, a forged root in the chain, other
// bytes, or, where certification is required, a missing or failed certification.
TEST_P(HubTest, DeploymentEvidenceChainsFromThePinnedRootAndNothingElse) {
  const std::string pin = dir_ + "/pinned-root.json";
  fs::copy_file(Meta("1.root.json"), pin);
  auto new_root = SigningKey::Generate().value();
  RootChange rotate;
  rotate.grant = {{"root", new_root.public_key()}};
  rotate.revoke = {{"root", root_key_->KeyId()}};
  ASSERT_TRUE(UpdateRoot(hub_, rotate, {root_key_.get(), &new_root}).ok());
  ASSERT_TRUE(PublishModel("m", "1.0.0").ok());
  auto c = Client();
  ASSERT_TRUE(c->Update().ok());
  ModelVersion m = c->Find("m", "1.0.0").value();
  const ModelFile* f = m.File("model");
  auto ev = CollectEvidence(*c, m);
  ASSERT_TRUE(ev.ok()) << ev.status().message();
  json deployed = {{"name", "m"}, {"version", "1.0.0"}, {"evidence", *ev}};
  std::vector<TrustedRoot> trusted = {ReadTrustedRoot(pin).value()};
  auto v = VerifyEvidence(deployed, trusted, f->sha256, f->length, Requirement::kSigned, "v1");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->root_version, 2);
  EXPECT_EQ(v->publisher, root_key_->KeyId());

  // Another hub's root pins nothing here.
  const std::string other = dir_ + "/other";
  auto other_key = SigningKey::Generate().value();
  ASSERT_TRUE(InitHub(other, other_key, {}).ok());
  auto st = VerifyEvidence(deployed, {ReadTrustedRoot(other + "/metadata/1.root.json").value()},
                           f->sha256, f->length, Requirement::kSigned, "v1");
  EXPECT_EQ(st.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.status().message().find("does not trust"), std::string::npos);
  // A forged second root (signed by a key the pinned root does not hold) breaks the chain.
  json forged = deployed;
  Root r2 = Root::FromJson(forged["evidence"]["roots"][1]["signed"]).value();
  auto forger = SigningKey::Generate().value();
  r2.Grant("root", forger.public_key());
  forged["evidence"]["roots"][1] = SignEnvelope(r2.ToJson(), {&forger}).value();
  EXPECT_FALSE(
      VerifyEvidence(forged, trusted, f->sha256, f->length, Requirement::kSigned, "v1").ok());
  // Other bytes.
  st = VerifyEvidence(deployed, trusted, std::string(64, '0'), f->length, Requirement::kSigned,
                      "v1");
  EXPECT_EQ(st.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(st.status().message().find("not what the publisher signed"), std::string::npos);

  // Certification: none yet; a failed one; a passing one by the root's certifier key.
  st = VerifyEvidence(deployed, trusted, f->sha256, f->length, Requirement::kCertified, "v1");
  EXPECT_EQ(st.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.status().message().find("not certified"), std::string::npos);
  Certification cert;
  cert.name = "m";
  cert.version = "1.0.0";
  cert.artifact_sha256 = f->sha256;
  cert.checks = {{"format", true, ""}, {"finite_weights", false, "a NaN in layer 2"}};
  deployed["evidence"]["attestations"] = {SignCertification(cert, *root_key_).value()};
  st = VerifyEvidence(deployed, trusted, f->sha256, f->length, Requirement::kCertified, "v1");
  EXPECT_NE(st.status().message().find("failed check finite_weights (a NaN in layer 2)"),
            std::string::npos)
      << st.status().message();
  cert.checks[1].passed = true;
  deployed["evidence"]["attestations"].push_back(SignCertification(cert, *root_key_).value());
  v = VerifyEvidence(deployed, trusted, f->sha256, f->length, Requirement::kCertified, "v1");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->certifiers.size(), 1u);
  // ... but not by a key that is no certifier of the root.
  deployed["evidence"]["attestations"] = {SignCertification(cert, forger).value()};
  EXPECT_FALSE(
      VerifyEvidence(deployed, trusted, f->sha256, f->length, Requirement::kCertified, "v1").ok());
}

TEST_P(HubTest, MixAndMatchOfTargetsFromAnotherSnapshotIsRefused) {
  ASSERT_TRUE(PublishModel("a", "1").ok());  // targets 2, snapshot 2
  ASSERT_TRUE(PublishModel("b", "1").ok());  // targets 3, snapshot 3
  // Serve snapshot 3 with the (validly signed) targets of version 2 under its name.
  Spit(Meta("3.targets.json"), Slurp(Meta("2.targets.json")));
  Status st = Client()->Update();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.message();
  EXPECT_NE(st.message().find("mixed from another snapshot"), std::string::npos) << st.message();
}

TEST_P(HubTest, EvenATrustedPublisherCannotNameAPathOutsideItsModel) {
  ASSERT_TRUE(PublishModel("m", "1.0.0").ok());
  json t = json::parse(Slurp(Meta("targets.json")))["signed"];
  t["version"] = t["version"].get<int64_t>() + 1;
  json entry = t["targets"]["m/1.0.0/model.rhm"];
  t["targets"]["m/1.0.0/../../../keys/online.key"] = entry;
  const std::string text = Canonical(SignEnvelope(t, {root_key_.get()}).value());
  Spit(Meta(std::to_string(t["version"].get<int64_t>()) + ".targets.json"), text);
  Spit(Meta("targets.json"), text);
  ResignWithOnlineKey();
  Status st = Client()->Update();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.message();
  EXPECT_NE(st.message().find("is not NAME/VERSION/FILE"), std::string::npos) << st.message();
}

TEST_P(HubTest, ConcurrentPublishersOfDifferentModelsBothLand) {
  std::vector<std::thread> ts;
  std::vector<Status> results(6);
  for (int i = 0; i < 6; ++i) {
    ts.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = PublishModel("model-" + std::to_string(i), "1.0");
    });
  }
  for (auto& t : ts) t.join();
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r.message();
  auto c = Client();
  ASSERT_TRUE(c->Update().ok());
  EXPECT_EQ(c->Models().size(), 6u);
}

TEST_P(HubTest, KeysAreEd25519WithPrivateFilesOfMode0600) {
  auto k = SigningKey::Generate().value();
  ASSERT_TRUE(k.WritePair(dir_ + "/keys").ok());
  EXPECT_EQ(fs::status(dir_ + "/keys/hub.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(k.WritePair(dir_ + "/keys").code(), StatusCode::kAlreadyExists);
  auto back = SigningKey::Load(dir_ + "/keys/hub.key");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->KeyId(), k.KeyId());
  EXPECT_EQ(LoadPublicKey(dir_ + "/keys/hub.pub").value().KeyId(), k.KeyId());
  auto sig = k.Sign("hello").value();
  EXPECT_TRUE(VerifySignature(k.public_key(), "hello", sig));
  EXPECT_FALSE(VerifySignature(k.public_key(), "hellO", sig));
  fs::permissions(dir_ + "/keys/hub.key", fs::perms::others_read, fs::perm_options::add);
  EXPECT_FALSE(SigningKey::Load(dir_ + "/keys/hub.key").ok());
}

INSTANTIATE_TEST_SUITE_P(DirectoryAndHttp, HubTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "http" : "directory";
                         });

TEST(HubServeTest, ServesOnlyTheVerifiedTreeAndPagesThatEscapeTheCard) {
  const std::string dir = "/tmp/ronghe-hub-serve-test-" + std::to_string(::getpid());
  fs::remove_all(dir);
  auto root = SigningKey::Generate().value();
  ASSERT_TRUE(InitHub(dir + "/hub", root, {}).ok());
  fs::create_directories(dir + "/src");
  Spit(dir + "/src/m.rhm", "weights");
  Spit(dir + "/src/card.md", "# Loans <script>alert(1)</script>\n- five banks\n");
  PublishRequest r{dir + "/src/m.rhm",
                   "loans",
                   "1.0",
                   dir + "/src/card.md",
                   {{"manifest", {{"metrics", {{"roc_auc", 0.71}}}}}}};
  ASSERT_TRUE(Publish(dir + "/hub", r, root).ok());
  HubServeOptions o;
  o.dir = dir + "/hub";
  o.host = "127.0.0.1";
  o.port = 0;
  o.refresh_every_s = 0;
  auto s = HubServer::Start(o);
  ASSERT_TRUE(s.ok());
  auto page = HubModelHtml(dir + "/hub", "loans");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->find("<script>"), std::string::npos) << *page;
  EXPECT_NE(page->find("&lt;script&gt;"), std::string::npos);
  EXPECT_NE(page->find("<li>five banks</li>"), std::string::npos);
  auto index = HubIndexHtml(dir + "/hub");
  ASSERT_TRUE(index.ok());
  EXPECT_NE(index->find("roc_auc 0.7100"), std::string::npos) << *index;
  EXPECT_NE(index->find("not certified"), std::string::npos);
  // The online key and anything outside the tree are never served.
  auto src = OpenHubSource("http://127.0.0.1:" + std::to_string((*s)->port())).value();
  EXPECT_EQ(src->Fetch("keys/online.key", 1 << 20).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(src->Fetch("metadata/../keys/online.key", 1 << 20).status().code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(src->Fetch("metadata/1.root.json", 1 << 20).ok());
  // A server sending more than the signed length is cut off.
  EXPECT_EQ(src->Fetch("targets/loans/1.0/card.md", 5).status().code(), StatusCode::kDataLoss);
  s->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ronghe::hub
