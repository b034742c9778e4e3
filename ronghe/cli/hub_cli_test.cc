// `ronghe hub` end to end with the real binary, as the acceptance check runs it: keys, a
// hub, a real model published, shown, searched and pulled; then the stored artifact and targets
// metadata flipped and an older metadata copy restored, each later pull exiting non-zero with the
// reason, and an untouched pull succeeding.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ronghe/cli/test_util.h"

namespace ronghe::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void Spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

TEST(HubCliTest, PublishShowPullAndEveryTamperingIsRefusedByName) {
  const std::string home = FreshHome("hub-cli");
  const std::string hub = home + "/hub", keys = home + "/keys";
  const std::string model = SourcePath("examples/serving/repo/fraud/1/model.rhm");
  auto run = [&](const std::vector<std::string>& args) { return RunRonghe(home, args); };
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/root"}).exit_code, 0);
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/bank"}).exit_code, 0);
  EXPECT_EQ(fs::status(keys + "/root/hub.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  auto r = run({"hub", "init", "--hub", hub, "--root-key", keys + "/root/hub.key", "--publisher",
                keys + "/bank/hub.pub"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Spit(home + "/card.md", "# Fraud detector\nLending Club bad-loan model, five banks.\n");
  auto publish = [&](const std::string& version) {
    return run({"hub", "publish", "--hub", hub, "--model", model, "--name", "fraud-detector",
                "--version", version, "--card", home + "/card.md", "--key",
                keys + "/bank/hub.key"});
  };
  r = publish("1.2.0");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = run({"hub", "show", "--hub", hub, "fraud-detector", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["version"], "1.2.0");
  EXPECT_EQ(j["provenance"]["manifest"]["task"], "binary");
  EXPECT_TRUE(j["provenance"]["manifest"].contains("metrics"));
  EXPECT_NE(j["card"].get<std::string>().find("five banks"), std::string::npos);
  r = run({"hub", "search", "--hub", hub, "BANKS", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out).size(), 1u);

  const std::string out = home + "/pulled";
  auto pull = [&] {
    return run({"hub", "pull", "--hub", hub, "fraud-detector@1.2.0", "--out", out});
  };
  r = pull();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Slurp(out + "/model.rhm"), Slurp(model));

  r = publish("1.2.0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("already published"), std::string::npos) << r.err;

  // A flipped byte in the hub's copy of the artifact.
  const std::string stored = hub + "/targets/fraud-detector/1.2.0/model.rhm";
  const std::string good_model = Slurp(stored);
  std::string bad = good_model;
  bad[bad.size() / 2] ^= 0x40;
  Spit(stored, bad);
  r = pull();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("model.rhm: sha256"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tampered"), std::string::npos) << r.err;
  Spit(stored, good_model);

  // A flipped byte in the targets metadata the snapshot names.
  const std::string targets = hub + "/metadata/2.targets.json";
  const std::string good_targets = Slurp(targets);
  std::string t = good_targets;
  t[t.find("1.2.0")] = '7';
  Spit(targets, t);
  r = pull();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("2.targets.json"), std::string::npos) << r.err;
  Spit(targets, good_targets);
  r = pull();
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // An older copy of the metadata restored after the client has seen a newer one.
  const std::string old_timestamp = Slurp(hub + "/metadata/timestamp.json");
  r = publish("1.3.0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run({"hub", "show", "--hub", hub, "fraud-detector", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["version"], "1.3.0");
  const std::string new_timestamp = Slurp(hub + "/metadata/timestamp.json");
  Spit(hub + "/metadata/timestamp.json", old_timestamp);
  r = pull();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rollback"), std::string::npos) << r.err;
  Spit(hub + "/metadata/timestamp.json", new_timestamp);
  r = pull();
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // The same hub over HTTP: `hub serve`, a pull from another trust directory (a fresh home), the
  // HTML listing.
  const std::string home2 = FreshHome("hub-cli-http");
  pid_t server = SpawnRonghe(
      home, {"hub", "serve", "--dir", hub, "--host", "127.0.0.1", "--http", "0"}, "hub-serve");
  const int port = WaitForPort(server, home + "/hub-serve.stdout");
  ASSERT_GT(port, 0) << Slurp(home + "/hub-serve.stderr");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  r = RunRonghe(home2, {"hub", "pull", "--hub", url, "fraud-detector", "--out", home2 + "/got"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Slurp(home2 + "/got/model.rhm"), Slurp(model));
  Spit(stored, bad);
  r = RunRonghe(home2,
                {"hub", "pull", "--hub", url, "fraud-detector@1.2.0", "--out", home2 + "/got2"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tampered"), std::string::npos) << r.err;
  Spit(stored, good_model);
  ::kill(server, SIGTERM);
  EXPECT_EQ(WaitForExit(server, 30), 0);

  // Deploy into a serving repository: versions 1 and 2, each with where it came from.
  const std::string repo = home + "/repo";
  fs::create_directories(repo);
  r = run({"hub", "deploy", "--hub", hub, "fraud-detector@1.2.0", "--repo", repo});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run({"hub", "deploy", "--hub", hub, "fraud-detector", "--repo", repo});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Slurp(repo + "/fraud-detector/1/model.rhm"), Slurp(model));
  EXPECT_EQ(json::parse(Slurp(repo + "/fraud-detector/2/hub.json"))["version"], "1.3.0");
  EXPECT_TRUE(fs::exists(repo + "/fraud-detector/config.toml"));
  EXPECT_TRUE(!fs::exists(repo + "/.hub-staging") || fs::is_empty(repo + "/.hub-staging"));
  // A tampered artifact is never installed.
  Spit(stored, bad);
  r = run({"hub", "deploy", "--hub", hub, "fraud-detector@1.2.0", "--repo", repo});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tampered"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(repo + "/fraud-detector/3"));
  Spit(stored, good_model);

  // Certification: the root key certifies. A card overstating a metric fails (exit 1, the failed
  // attestation stored and shown); an honest card with a licence passes.
  Spit(home + "/over.md", "# Fraud\nLicense: Apache-2.0\n\n## Metrics\n- roc_auc: 0.95\n");
  Spit(home + "/honest.md", "# Fraud\nLicense: Apache-2.0\n\n## Metrics\n- roc_auc: 0.7276\n");
  auto publish_card = [&](const std::string& version, const std::string& card) {
    return run({"hub", "publish", "--hub", hub, "--model", model, "--name", "fraud-detector",
                "--version", version, "--card", card, "--key", keys + "/bank/hub.key"});
  };
  ASSERT_EQ(publish_card("1.4.0", home + "/over.md").exit_code, 0);
  r = run(
      {"hub", "certify", "--hub", hub, "fraud-detector@1.4.0", "--key", keys + "/root/hub.key"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("roc_auc claimed 0.9500 measured 0.72"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("outside tolerance"), std::string::npos) << r.out;
  ASSERT_EQ(publish_card("1.5.0", home + "/honest.md").exit_code, 0);
  r = run(
      {"hub", "certify", "--hub", hub, "fraud-detector@1.5.0", "--key", keys + "/root/hub.key"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("no_executable_content  pass"), std::string::npos) << r.out;
  r = run(
      {"hub", "certify", "--hub", hub, "fraud-detector@1.5.0", "--key", keys + "/bank/hub.key"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("may not certify"), std::string::npos) << r.err;
  auto certs = [&](const std::string& ref) {
    auto s = run({"hub", "show", "--hub", hub, ref, "--json"});
    EXPECT_EQ(s.exit_code, 0) << s.err;
    return json::parse(s.out)["certifications"];
  };
  json c14 = certs("fraud-detector@1.4.0");
  ASSERT_EQ(c14.size(), 1u);
  EXPECT_EQ(c14[0]["verdict"], "fail");
  json c15 = certs("fraud-detector@1.5.0");
  ASSERT_EQ(c15.size(), 1u);
  EXPECT_EQ(c15[0]["verdict"], "pass");
  EXPECT_TRUE(c15[0]["valid"].get<bool>());
  // A passing attestation copied onto the failed version does not count there, and a flipped
  // byte in an attestation voids it.
  const std::string att = hub + "/attestations/fraud-detector/1.5.0/" +
                          c15[0]["certifier"].get<std::string>() + ".json";
  const std::string att14 = hub + "/attestations/fraud-detector/1.4.0/" +
                            c15[0]["certifier"].get<std::string>() + ".json";
  Spit(att14, Slurp(att));
  c14 = certs("fraud-detector@1.4.0");
  EXPECT_FALSE(c14[0]["valid"].get<bool>());
  EXPECT_NE(c14[0]["problem"].get<std::string>().find("another artifact"), std::string::npos);
  std::string a = Slurp(att);
  a[a.find("\"pass\"") + 2] ^= 0x01;
  Spit(att, a);
  c15 = certs("fraud-detector@1.5.0");
  EXPECT_FALSE(c15[0]["valid"].get<bool>()) << c15.dump();

  // A key the root never granted cannot publish.
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/stranger"}).exit_code, 0);
  r = run({"hub", "publish", "--hub", hub, "--model", model, "--name", "fraud-detector",
           "--version", "2.0.0", "--card", home + "/card.md", "--key", keys + "/stranger/hub.key"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("may not publish"), std::string::npos) << r.err;
}

// A repository with `[policy] require = "certified"`: `hub deploy` refuses an uncertified and a
// failed-certification model (naming why) and leaves the repository untouched; the server checks
// every load the same way, so a model copied in by hand, a tampered artifact and evidence from a
// hub the repository does not trust are refused while the certified version keeps serving.
// `ronghe serve --hub` does the pull, the verification and the serving in one command.
TEST(HubCliTest, ACertifiedRepositoryRefusesWhatItCannotVerifyOnDeployAndOnEveryLoad) {
  const std::string home = FreshHome("hub-policy");
  const std::string hub = home + "/hub", keys = home + "/keys";
  const std::string model = SourcePath("examples/serving/repo/fraud/1/model.rhm");
  auto run = [&](const std::vector<std::string>& args) { return RunRonghe(home, args); };
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/root"}).exit_code, 0);
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/bank"}).exit_code, 0);
  auto r = run({"hub", "init", "--hub", hub, "--root-key", keys + "/root/hub.key", "--publisher",
                keys + "/bank/hub.pub"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Spit(home + "/over.md", "# Fraud\nLicense: Apache-2.0\n\n## Metrics\n- roc_auc: 0.95\n");
  Spit(home + "/honest.md", "# Fraud\nLicense: Apache-2.0\n\n## Metrics\n- roc_auc: 0.7276\n");
  auto publish = [&](const std::string& h, const std::string& version, const std::string& card,
                     const std::string& key) {
    return run({"hub", "publish", "--hub", h, "--model", model, "--name", "fraud-detector",
                "--version", version, "--card", card, "--key", key});
  };
  auto certify = [&](const std::string& h, const std::string& ref, const std::string& key) {
    return run({"hub", "certify", "--hub", h, ref, "--key", key});
  };
  ASSERT_EQ(publish(hub, "1.0.0", home + "/honest.md", keys + "/bank/hub.key").exit_code, 0);
  ASSERT_EQ(certify(hub, "fraud-detector@1.0.0", keys + "/root/hub.key").exit_code, 0);
  ASSERT_EQ(publish(hub, "1.1.0", home + "/honest.md", keys + "/bank/hub.key").exit_code, 0);
  ASSERT_EQ(publish(hub, "1.2.0", home + "/over.md", keys + "/bank/hub.key").exit_code, 0);
  ASSERT_EQ(certify(hub, "fraud-detector@1.2.0", keys + "/root/hub.key").exit_code, 1);

  const std::string repo = home + "/repo";
  fs::create_directories(repo);
  fs::copy_file(hub + "/metadata/1.root.json", repo + "/hub-root.json");
  Spit(repo + "/repository.toml",
       "[policy]\nrequire = \"certified\"\ntrusted_roots = [\"hub-root.json\"]\n");
  auto deploy = [&](const std::string& ref) {
    return run({"hub", "deploy", "--hub", hub, ref, "--repo", repo});
  };
  r = deploy("fraud-detector@1.1.0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("refused by the repository's policy"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not certified: no certification"), std::string::npos) << r.err;
  r = deploy("fraud-detector@1.2.0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("failed check metrics_reproduced"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(repo + "/fraud-detector"));
  r = deploy("fraud-detector@1.0.0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("certified by"), std::string::npos) << r.out;

  pid_t server =
      SpawnRonghe(home, {"serve", "--repo", repo, "--host", "127.0.0.1", "--http", "0"}, "serve");
  const int port = WaitForPort(server, home + "/serve.stdout");
  ASSERT_GT(port, 0) << Slurp(home + "/serve.stderr");
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(60, 0);
  const std::string body = Slurp(SourcePath("examples/serving/fraud.json"));
  auto infer = [&] {
    auto res = http.Post("/v2/models/fraud-detector/infer", body, "application/json");
    return res ? res->status : -1;
  };
  auto load = [&]() -> std::string {
    auto res = http.Post("/v2/repository/models/fraud-detector/load", "", "application/json");
    return res ? std::to_string(res->status) + " " + res->body : "no answer";
  };
  EXPECT_EQ(infer(), 200);
  const std::string v1 = repo + "/fraud-detector/1";
  auto install = [&](const std::string& version, const std::string& from_dir, bool flip) {
    const std::string tmp = repo + "/fraud-detector/tmp", dir = repo + "/fraud-detector/" + version;
    fs::remove_all(tmp);
    fs::remove_all(dir);
    fs::create_directories(tmp);
    std::string bytes = Slurp(from_dir + "/model.rhm");
    if (flip) bytes[bytes.size() / 2] ^= 0x40;
    Spit(tmp + "/model.rhm", bytes);
    if (fs::exists(from_dir + "/hub.json"))
      fs::copy_file(from_dir + "/hub.json", tmp + "/hub.json");
    fs::rename(tmp, dir);
  };
  // Copied in by hand, no evidence.
  install("2", fs::path(model).parent_path().string(), false);
  std::string said = load();
  EXPECT_EQ(said.substr(0, 3), "503") << said;
  EXPECT_NE(said.find("no hub.json"), std::string::npos) << said;
  EXPECT_EQ(infer(), 200);  // version 1 keeps serving
  // The certified version's evidence beside a flipped artifact.
  fs::remove_all(repo + "/fraud-detector/2");
  install("3", v1, true);
  said = load();
  EXPECT_NE(said.find("is not what the publisher signed"), std::string::npos) << said;
  // Evidence from another hub (its own root, publisher and certifier): not a root this
  // repository pins.
  const std::string evil = home + "/evil-hub", evil_repo = home + "/evil-repo";
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/evil"}).exit_code, 0);
  ASSERT_EQ(run({"hub", "init", "--hub", evil, "--root-key", keys + "/evil/hub.key"}).exit_code, 0);
  ASSERT_EQ(publish(evil, "1.0.0", home + "/honest.md", keys + "/evil/hub.key").exit_code, 0);
  ASSERT_EQ(certify(evil, "fraud-detector@1.0.0", keys + "/evil/hub.key").exit_code, 0);
  fs::create_directories(evil_repo);
  r = run({"hub", "deploy", "--hub", evil, "fraud-detector", "--repo", evil_repo});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::remove_all(repo + "/fraud-detector/3");
  install("4", evil_repo + "/fraud-detector/1", false);
  said = load();
  EXPECT_NE(said.find("does not trust"), std::string::npos) << said;
  // Evidence without its certification.
  json ev = json::parse(Slurp(v1 + "/hub.json"));
  ev["evidence"]["attestations"] = json::array();
  fs::remove_all(repo + "/fraud-detector/4");
  install("5", v1, false);
  Spit(repo + "/fraud-detector/5/hub.json", ev.dump());
  said = load();
  EXPECT_NE(said.find("not certified"), std::string::npos) << said;
  // The certified artifact with its evidence loads.
  fs::remove_all(repo + "/fraud-detector/5");
  install("6", v1, false);
  said = load();
  EXPECT_EQ(said.substr(0, 3), "200") << said;
  EXPECT_EQ(infer(), 200);
  ::kill(server, SIGTERM);
  EXPECT_EQ(WaitForExit(server, 30), 0);

  // A repository whose policy names no trusted root does not start.
  Spit(repo + "/repository.toml", "[policy]\nrequire = \"certified\"\n");
  r = run({"serve", "--repo", repo, "--http", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("policy.trusted_roots"), std::string::npos) << r.err;

  // One command: pull, verify, serve. An uncertified version is refused before anything serves.
  r = run({"serve", "--hub", hub, "--model", "fraud-detector@1.1.0", "--require", "certified",
           "--repo", home + "/one", "--http", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not certified"), std::string::npos) << r.err;
  server = SpawnRonghe(home,
                       {"serve", "--hub", hub, "--model", "fraud-detector@1.0.0", "--require",
                        "certified", "--repo", home + "/one", "--host", "127.0.0.1", "--http", "0"},
                       "one");
  const int port2 = WaitForPort(server, home + "/one.stdout");
  ASSERT_GT(port2, 0) << Slurp(home + "/one.stderr");
  httplib::Client http2("127.0.0.1", port2);
  http2.set_read_timeout(60, 0);
  auto res = http2.Post("/v2/models/fraud-detector/infer", body, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_NE(Slurp(home + "/one/repository.toml").find("require = \"certified\""),
            std::string::npos);
  ::kill(server, SIGTERM);
  EXPECT_EQ(WaitForExit(server, 30), 0);
  // Started again, it reuses the installed copy instead of installing another.
  server = SpawnRonghe(home,
                       {"serve", "--hub", hub, "--model", "fraud-detector@1.0.0", "--repo",
                        home + "/one", "--host", "127.0.0.1", "--http", "0"},
                       "again");
  EXPECT_GT(WaitForPort(server, home + "/again.stdout"), 0) << Slurp(home + "/again.stderr");
  EXPECT_NE(Slurp(home + "/again.stdout").find("using fraud-detector@1.0.0"), std::string::npos);
  EXPECT_FALSE(fs::exists(home + "/one/fraud-detector/2"));
  ::kill(server, SIGTERM);
  EXPECT_EQ(WaitForExit(server, 30), 0);
}

}  // namespace
}  // namespace ronghe::testing
