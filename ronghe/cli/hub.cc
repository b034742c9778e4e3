// `ronghe hub keygen|init|publish|pull|show|search|refresh|root`: the model hub (ronghe/hub).
// A hub is a directory (`--hub DIR`, default $RONGHE_HOME/hub); clients keep the metadata they
// last trusted under $RONGHE_HOME/hub-trust/ and refuse anything older, expired or mis-signed.
#include "ronghe/hub/hub.h"

#include <ATen/ATen.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/hub_deploy.h"
#include "ronghe/hub/attest.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/evidence.h"
#include "ronghe/hub/server.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/nn/tensor_file.h"
#include "ronghe/serve/repository.h"
#include "ronghe/serve/signature.h"
#include "ronghe/store/run_store.h"
#include "ronghe/train/job.h"

namespace ronghe::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string HubDir(const Globals& g, const std::string& flag) {
  return flag.empty() ? g.home + "/hub" : flag;
}

// "name" or "name@version".
std::pair<std::string, std::string> SplitRef(const std::string& ref) {
  auto at = ref.find('@');
  if (at == std::string::npos) return {ref, ""};
  return {ref.substr(0, at), ref.substr(at + 1)};
}

Result<std::unique_ptr<hub::HubClient>> UpdatedClient(const Globals& g, const std::string& hub,
                                                      const std::string& trusted_root,
                                                      const std::string& ca = "") {
  hub::ClientOptions o;
  o.hub = hub;
  o.ca_file = ca;
  o.trust_dir = hub::TrustDirFor(g.home, hub);
  o.trusted_root = trusted_root;
  ASSIGN_OR_RETURN(auto c, hub::HubClient::Open(o));
  RETURN_IF_ERROR(c->Update());
  return c;
}

// The client, updated, and the model version `ref` (NAME or NAME@VERSION) names.
struct Resolved {
  std::unique_ptr<hub::HubClient> client;
  hub::ModelVersion model;
};
Result<Resolved> Resolve(const Globals& g, const std::string& hub, const std::string& ref,
                         const std::string& trusted_root, const std::string& ca) {
  auto [name, version] = SplitRef(ref);
  Resolved r;
  ASSIGN_OR_RETURN(r.client, UpdatedClient(g, hub, trusted_root, ca));
  ASSIGN_OR_RETURN(r.model, r.client->Find(name, version));
  return r;
}

// The card's machine-readable part: what the artifact says about itself, and the run that made
// it when this home's run store has one with the same artifact digest.
Result<json> Provenance(const Globals& g, const std::string& model_path) {
  ASSIGN_OR_RETURN(nn::TensorFile tf, nn::ReadTensorFile(model_path));
  const json& m = tf.meta;
  if (m.value("format", "") != "ronghe.model") {
    return InvalidArgument(model_path + ": not a ronghe model artifact (format '" +
                           m.value("format", "") + "')");
  }
  ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(model_path));
  json p = {
      {"artifact", {{"sha256", sha}, {"bytes", static_cast<int64_t>(fs::file_size(model_path))}}}};
  json manifest = json::object();
  for (const char* k : {"format", "format_version", "task", "classes", "model", "parameters",
                        "data", "data_sha256", "metrics", "train", "created_at"}) {
    if (m.contains(k)) manifest[k] = m[k];
  }
  if (m.contains("preprocessing") && m["preprocessing"].is_object()) {
    manifest["preprocessing_kind"] = m["preprocessing"].value("kind", "");
  }
  p["manifest"] = manifest;
  p["run"] = nullptr;
  auto store = store::OpenHomeStore(g.home);
  if (store.ok()) {
    auto runs = (*store)->ListRuns(1000);
    if (runs.ok()) {
      for (const auto& r : *runs) {
        bool match = false;
        for (const auto& a : r.artifacts) match = match || a.sha256 == sha;
        if (!match) continue;
        json run = {{"id", r.id},
                    {"kind", r.kind},
                    {"name", r.name},
                    {"status", r.status},
                    {"host", r.host},
                    {"created_at", r.created_at},
                    {"finished_at", r.finished_at},
                    {"config", json::parse(r.config_json, nullptr, false)}};
        // The last value of each metric, per split.
        std::map<std::string, double> last;
        for (const auto& mr : r.metrics) last[mr.split + "/" + mr.name] = mr.value;
        run["final_metrics"] = last;
        if (r.kind == "fed") {
          const json& c = run["config"];
          json fed = json::object();
          for (const char* k :
               {"consortium", "parties", "rounds", "threshold", "secure_aggregation", "strategy"}) {
            if (c.is_object() && c.contains(k)) fed[k] = c[k];
          }
          p["federated"] = fed;
        }
        p["run"] = run;
        break;
      }
    }
  }
  return p;
}

void PrintModel(const hub::ModelVersion& m) {
  std::printf("%s@%s  published %s by %s\n", m.name.c_str(), m.version.c_str(), m.published.c_str(),
              m.publisher.substr(0, 16).c_str());
  for (const auto& f : m.files) {
    std::printf("  %-12s %10lld bytes  sha256 %s\n", f.kind.c_str(),
                static_cast<long long>(f.length), f.sha256.c_str());
  }
}

struct KeygenFlags {
  std::string out;
};
struct InitFlags {
  std::string hub, root_key;
  std::vector<std::string> publishers, certifiers;
};
struct PublishFlags {
  std::string hub, model, name, version, card, key;
};
struct ClientFlags {
  std::string hub, ref, out, text, trusted_root, ca;
  bool json = false;
};
struct CertifyFlags {
  std::string hub, ref, key;
  double tolerance = 0.005;
};
struct DeployFlags {
  std::string hub, ref, repo, as, trusted_root, ca;
};
struct RootFlags {
  std::string hub;
  std::vector<std::string> keys, grant, revoke, thresholds;
};

int CmdKeygen(const KeygenFlags& f) {
  auto k = hub::SigningKey::Generate();
  if (!k.ok()) return Fail(k.status());
  Status st = k->WritePair(f.out);
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s/hub.key (0600) and %s/hub.pub\nkey id %s\n", f.out.c_str(), f.out.c_str(),
              k->KeyId().c_str());
  return 0;
}

int CmdInit(const Globals& g, const InitFlags& f) {
  auto root = hub::SigningKey::Load(f.root_key);
  if (!root.ok()) return Fail(root.status());
  hub::InitOptions o;
  for (const auto& p : f.publishers) {
    auto k = hub::LoadPublicKey(p);
    if (!k.ok()) return Fail(k.status());
    o.publishers.push_back(*k);
  }
  for (const auto& p : f.certifiers) {
    auto k = hub::LoadPublicKey(p);
    if (!k.ok()) return Fail(k.status());
    o.certifiers.push_back(*k);
  }
  const std::string dir = HubDir(g, f.hub);
  Status st = hub::InitHub(dir, *root, o);
  if (!st.ok()) return Fail(st);
  std::printf(
      "hub at %s: root version 1 (root key %s), %zu publisher(s), %zu certifier(s) besides "
      "the root key\n",
      dir.c_str(), root->KeyId().substr(0, 16).c_str(), o.publishers.size(), o.certifiers.size());
  return 0;
}

int CmdPublish(const Globals& g, const PublishFlags& f) {
  auto key = hub::SigningKey::Load(f.key);
  if (!key.ok()) return Fail(key.status());
  auto prov = Provenance(g, f.model);
  if (!prov.ok()) return Fail(prov.status());
  if (!FileExists(f.card)) return Fail(NotFound("--card " + f.card + ": no such file"));
  hub::PublishRequest r;
  r.model_path = f.model;
  r.card_path = f.card;
  r.name = f.name;
  r.version = f.version;
  r.provenance = *prov;
  const std::string dir = HubDir(g, f.hub);
  Status st = hub::Publish(dir, r, *key);
  if (!st.ok()) return Fail(st);
  std::printf(
      "published %s@%s to %s (signed by %s)%s\n", f.name.c_str(), f.version.c_str(), dir.c_str(),
      key->KeyId().substr(0, 16).c_str(),
      (*prov)["run"].is_null()
          ? ""
          : (", provenance: run " + std::to_string((*prov)["run"]["id"].get<int64_t>())).c_str());
  return 0;
}

int CmdPull(const Globals& g, const ClientFlags& f) {
  auto res = Resolve(g, HubDir(g, f.hub), f.ref, f.trusted_root, f.ca);
  if (!res.ok()) return Fail(res.status());
  auto& c = res->client;
  const hub::ModelVersion* m = &res->model;
  Status st = MakeDirs(f.out);
  if (!st.ok()) return Fail(st);
  for (const auto& file : m->files) {
    const std::string out = f.out + "/" + fs::path(file.path).filename().string();
    st = c->Download(file, out);
    if (!st.ok()) return Fail(st);
  }
  std::printf("pulled %s@%s into %s (%zu files, each checked against signed metadata)\n",
              m->name.c_str(), m->version.c_str(), f.out.c_str(), m->files.size());
  return 0;
}

int CmdShow(const Globals& g, const ClientFlags& f) {
  auto res = Resolve(g, HubDir(g, f.hub), f.ref, f.trusted_root, f.ca);
  if (!res.ok()) return Fail(res.status());
  auto& c = res->client;
  const hub::ModelVersion* m = &res->model;
  const std::string& name = m->name;
  std::vector<std::string> versions;
  for (const auto& v : c->Models()) {
    if (v.name == name) versions.push_back(v.version);
  }
  std::string card;
  json provenance;
  if (const auto* cf = m->File("card")) {
    auto text = c->Read(*cf);
    if (!text.ok()) return Fail(text.status());
    card = *text;
  }
  if (const auto* pf = m->File("provenance")) {
    auto text = c->Read(*pf);
    if (!text.ok()) return Fail(text.status());
    provenance = json::parse(*text, nullptr, false);
  }
  json certifications = json::array();
  for (const auto& v : hub::CertificationsOf(*c, *m)) {
    json checks = json::array();
    for (const auto& k : v.certification.checks) {
      checks.push_back({{"name", k.name}, {"passed", k.passed}, {"detail", k.detail}});
    }
    certifications.push_back(
        {{"certifier", v.certification.certifier},
         {"valid", v.valid},
         {"problem", v.problem},
         {"verdict", v.valid ? (v.certification.passed() ? "pass" : "fail") : "invalid"},
         {"certified_at", v.certification.certified_at},
         {"checks", checks}});
  }
  if (f.json) {
    json files = json::array();
    for (const auto& file : m->files) {
      files.push_back({{"path", file.path},
                       {"kind", file.kind},
                       {"length", file.length},
                       {"sha256", file.sha256}});
    }
    json j = {{"name", m->name},
              {"version", m->version},
              {"versions", versions},
              {"publisher", m->publisher},
              {"published", m->published},
              {"files", files},
              {"card", card},
              {"provenance", provenance},
              {"signers", {{"targets", m->publisher}}},
              {"root_version", c->root().version},
              {"certifications", certifications}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  PrintModel(*m);
  std::string all;
  for (const auto& v : versions) all += (all.empty() ? "" : ", ") + v;
  std::printf("versions: %s\n", all.c_str());
  if (certifications.empty()) std::printf("certifications: none\n");
  for (const auto& cj : certifications) {
    std::printf(
        "certification by %s: %s%s\n", cj["certifier"].get<std::string>().substr(0, 16).c_str(),
        cj["verdict"].get<std::string>().c_str(),
        cj["valid"].get<bool>() ? "" : (" (" + cj["problem"].get<std::string>() + ")").c_str());
  }
  if (provenance.is_object() && provenance.contains("manifest") &&
      provenance["manifest"].contains("metrics")) {
    std::printf("metrics: %s\n", provenance["manifest"]["metrics"].dump().c_str());
  }
  std::printf("\n%s", card.c_str());
  return 0;
}

int CmdSearch(const Globals& g, const ClientFlags& f) {
  auto c = UpdatedClient(g, HubDir(g, f.hub), f.trusted_root, f.ca);
  if (!c.ok()) return Fail(c.status());
  auto lower = [](std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  const std::string needle = lower(f.text);
  // The latest version of each model whose name or card mentions the text.
  std::map<std::string, hub::ModelVersion> latest;
  for (const auto& m : (*c)->Models()) latest[m.name] = m;  // Models() is sorted by version
  json hits = json::array();
  for (const auto& [name, m] : latest) {
    std::string card;
    if (const auto* cf = m.File("card")) {
      auto text = (*c)->Read(*cf);
      if (!text.ok()) return Fail(text.status());
      card = *text;
    }
    if (lower(name).find(needle) == std::string::npos &&
        lower(card).find(needle) == std::string::npos) {
      continue;
    }
    std::string title = card.substr(0, card.find('\n'));
    hits.push_back({{"name", name}, {"version", m.version}, {"title", title}});
  }
  if (f.json) {
    std::printf("%s\n", hits.dump(2).c_str());
    return 0;
  }
  if (hits.empty()) std::printf("no model mentions '%s'\n", f.text.c_str());
  for (const auto& h : hits) {
    std::printf("%-32s %-10s %s\n", h["name"].get<std::string>().c_str(),
                h["version"].get<std::string>().c_str(), h["title"].get<std::string>().c_str());
  }
  return 0;
}

// The metrics a card claims: "- name: value" lines under a "## Metrics" heading (test split).
std::map<std::string, double> CardClaims(const std::string& card) {
  std::map<std::string, double> claims;
  bool in = false;
  size_t pos = 0;
  while (pos < card.size()) {
    size_t eol = card.find('\n', pos);
    if (eol == std::string::npos) eol = card.size();
    std::string line = card.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("#", 0) == 0) {
      std::string h = line.substr(line.find_first_not_of('#'));
      for (char& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      in = h.find("metrics") != std::string::npos;
      continue;
    }
    if (!in || line.rfind("- ", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(2, colon - 2);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    try {
      claims[name] = std::stod(line.substr(colon + 1));
    } catch (...) {
    }
  }
  return claims;
}

bool HasLicence(const std::string& card) {
  std::string lower = card;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower.find("licence:") != std::string::npos ||
         lower.find("license:") != std::string::npos ||
         lower.find("# licence") != std::string::npos ||
         lower.find("# license") != std::string::npos;
}

// Runs the certification checks (docs/hub.md) on a verified copy of the model and signs the
// result; a failed certification is stored too (it says what failed).
int CmdCertify(const Globals& g, const CertifyFlags& f) {
  const std::string dir = HubDir(g, f.hub);
  auto key = hub::SigningKey::Load(f.key);
  if (!key.ok()) return Fail(key.status());
  auto res = Resolve(g, dir, f.ref, "", "");
  if (!res.ok()) return Fail(res.status());
  auto& c = res->client;
  const hub::ModelVersion& m = res->model;
  if (!c->root().Holds("certifier", key->KeyId())) {
    return Fail(PermissionDenied("key " + key->KeyId().substr(0, 16) +
                                 " may not certify on this hub (not a certifier key of its root)"));
  }
  const std::string work = g.home + "/hub-certify-" + std::to_string(::getpid());
  Status st = MakeDirs(work, 0700);
  if (!st.ok()) return Fail(st);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{work};
  hub::Certification cert;
  cert.name = m.name;
  cert.version = m.version;
  auto check = [&](const std::string& name, bool passed, const std::string& detail) {
    cert.checks.push_back({name, passed, detail});
  };
  const hub::ModelFile* model = m.File("model");
  const hub::ModelFile* card_file = m.File("card");
  const hub::ModelFile* prov_file = m.File("provenance");
  if (!model || !card_file || !prov_file) {
    return Fail(DataLoss(m.name + "@" + m.version + ": model, card or provenance missing"));
  }
  cert.artifact_sha256 = model->sha256;
  const std::string artifact = work + "/model.rhm";
  st = c->Download(*model, artifact);
  if (!st.ok()) return Fail(st);
  auto card = c->Read(*card_file);
  if (!card.ok()) return Fail(card.status());
  auto prov_text = c->Read(*prov_file);
  if (!prov_text.ok()) return Fail(prov_text.status());
  const json prov = json::parse(*prov_text, nullptr, false);

  // 1. Format and digests: the signed sha256 (checked by Download) and the file's own.
  auto tf = nn::ReadTensorFile(artifact);
  check("format", tf.ok() && tf->meta.value("format", "") == "ronghe.model",
        tf.ok() ? "ronghe.model container, trailing SHA-256 and the signed sha256 " +
                      model->sha256.substr(0, 16) + "... hold"
                : tf.status().message());
  // 2. No executable content: the container holds a JSON header and raw tensors; nothing in it
  // is deserialised into code (no pickle, no TorchScript). Every tensor must be numeric.
  bool numeric = tf.ok();
  bool finite = tf.ok();
  int64_t values = 0;
  std::string bad;
  if (tf.ok()) {
    for (const auto& [name, t] : tf->tensors) {
      if (!(t.is_floating_point() || at::isIntegralType(t.scalar_type(), /*includeBool=*/true))) {
        numeric = false;
        bad = name;
      }
      values += t.numel();
      if (t.is_floating_point() && !at::isfinite(t).all().item<bool>()) {
        finite = false;
        bad = name;
      }
    }
  }
  check("no_executable_content", numeric,
        numeric ? "a JSON header and " + std::to_string(tf.ok() ? tf->tensors.size() : 0) +
                      " numeric tensors; the format has no code objects (no pickle)"
                : "tensor '" + bad + "' is not numeric");
  check("finite_weights", finite,
        finite ? std::to_string(values) + " values, all finite"
               : "tensor '" + bad + "' has NaN or Inf");
  // 3. The manifest's schema and preprocessing: the model loads, a server can build its signature.
  auto loaded = nn::LoadArtifact(artifact);
  Status sig =
      loaded.ok() ? serve::Signature::FromManifest(loaded->manifest).status() : loaded.status();
  check("manifest", sig.ok(),
        sig.ok() ? "model loads; inputs, outputs and preprocessing are valid" : sig.message());
  // 4. The card's claimed metrics, reproduced on the declared data (the manifest's test split).
  std::map<std::string, double> claims = CardClaims(*card);
  std::string claim_source = "the card's Metrics section";
  if (claims.empty() && prov.is_object() && prov.contains("manifest") &&
      prov["manifest"].contains("metrics") && prov["manifest"]["metrics"].contains("test")) {
    for (auto it = prov["manifest"]["metrics"]["test"].begin();
         it != prov["manifest"]["metrics"]["test"].end(); ++it) {
      if (it.value().is_number()) claims[it.key()] = it.value().get<double>();
    }
    claim_source = "the manifest's test metrics";
  }
  if (claims.empty()) {
    check("metrics_reproduced", false, "no metrics claimed (card Metrics section or manifest)");
  } else {
    train::EvalJobRequest er;
    er.home = g.home;
    er.artifact = artifact;
    er.split = "test";
    auto ev = train::RunEvalJob(er);
    if (!ev.ok()) {
      check("metrics_reproduced", false, "evaluation failed: " + ev.status().message());
    } else {
      bool all = true;
      std::string detail;
      for (const auto& [name, claimed] : claims) {
        auto got = ev->metrics.find(name);
        char buf[160];
        if (got == ev->metrics.end()) {
          all = false;
          detail += (detail.empty() ? "" : "; ") + name + " not measured";
          continue;
        }
        const bool ok = std::abs(got->second - claimed) <= f.tolerance;
        all = all && ok;
        std::snprintf(buf, sizeof buf, "%s claimed %.4f measured %.4f%s", name.c_str(), claimed,
                      got->second, ok ? "" : " (outside tolerance)");
        detail += (detail.empty() ? "" : "; ") + std::string(buf);
      }
      char tol[64];
      std::snprintf(tol, sizeof tol, " [tolerance %.4f, test split, run %lld]", f.tolerance,
                    static_cast<long long>(ev->run_id));
      check("metrics_reproduced", all, claim_source + ": " + detail + tol);
    }
  }
  // 5. A licence, and 6. the provenance fields.
  check("licence", HasLicence(*card),
        HasLicence(*card) ? "the card states a licence"
                          : "the card states no licence (a 'License:' line)");
  const bool prov_ok = prov.is_object() && prov.contains("artifact") &&
                       prov["artifact"].value("sha256", "") == model->sha256 &&
                       prov.contains("manifest") && prov["manifest"].contains("data_sha256") &&
                       prov["manifest"].contains("metrics");
  check("provenance", prov_ok,
        prov_ok ? "artifact digest, data sha256 and metrics recorded" +
                      std::string(prov["run"].is_null() ? "" : ", with the training run")
                : "provenance lacks the artifact digest, the data sha256 or the metrics");

  auto env = hub::SignCertification(cert, *key);
  if (!env.ok()) return Fail(env.status());
  st = hub::StoreAttestation(dir, m.name, m.version, key->KeyId(), *env);
  if (!st.ok()) return Fail(st);
  std::printf("%s@%s: certification %s (signed by %s)\n", m.name.c_str(), m.version.c_str(),
              cert.passed() ? "PASSED" : "FAILED", key->KeyId().substr(0, 16).c_str());
  for (const auto& k : cert.checks) {
    std::printf("  %-22s %s  %s\n", k.name.c_str(), k.passed ? "pass" : "FAIL", k.detail.c_str());
  }
  return cert.passed() ? 0 : 1;
}

int CmdDeploy(const Globals& g, const DeployFlags& f) {
  HubDeployRequest r;
  r.hub = HubDir(g, f.hub);
  r.ref = f.ref;
  r.repo = f.repo;
  r.as = f.as;
  r.trusted_root = f.trusted_root;
  r.ca = f.ca;
  auto d = DeployFromHub(g, r);
  if (!d.ok()) return Fail(d.status());
  std::printf(
      "deployed %s@%s as %s version %lld in %s (verified: signatures, versions, expiry, "
      "sha256)\n",
      d->name.c_str(), d->version.c_str(), d->as.c_str(), static_cast<long long>(d->repo_version),
      f.repo.c_str());
  if (!d->verdict.empty()) std::printf("repository policy: %s\n", d->verdict.c_str());
  return 0;
}

Result<std::pair<std::string, std::string>> RoleArg(const std::string& arg, const char* flag) {
  auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) {
    return InvalidArgument(std::string(flag) + " " + arg + ": want ROLE=VALUE");
  }
  return std::make_pair(arg.substr(0, eq), arg.substr(eq + 1));
}

int CmdRoot(const Globals& g, const RootFlags& f) {
  std::vector<hub::SigningKey> keys;
  for (const auto& p : f.keys) {
    auto k = hub::SigningKey::Load(p);
    if (!k.ok()) return Fail(k.status());
    keys.push_back(std::move(k).value());
  }
  hub::RootChange change;
  for (const auto& a : f.grant) {
    auto ra = RoleArg(a, "--grant");
    if (!ra.ok()) return Fail(ra.status());
    auto k = hub::LoadPublicKey(ra->second);
    if (!k.ok()) return Fail(k.status());
    change.grant.emplace_back(ra->first, *k);
  }
  for (const auto& a : f.revoke) {
    auto ra = RoleArg(a, "--revoke");
    if (!ra.ok()) return Fail(ra.status());
    std::string id = ra->second;
    if (FileExists(id)) {  // a key file rather than a key id
      auto k = hub::LoadPublicKey(id);
      if (!k.ok()) return Fail(k.status());
      id = k->KeyId();
    }
    change.revoke.emplace_back(ra->first, id);
  }
  for (const auto& a : f.thresholds) {
    auto ra = RoleArg(a, "--threshold");
    if (!ra.ok()) return Fail(ra.status());
    int t = 0;
    try {
      t = std::stoi(ra->second);
    } catch (...) {
    }
    if (t < 1) return Fail(InvalidArgument("--threshold " + a + ": want a positive integer"));
    change.thresholds.emplace_back(ra->first, t);
  }
  std::vector<const hub::SigningKey*> ptrs;
  for (const auto& k : keys) ptrs.push_back(&k);
  Status st = hub::UpdateRoot(HubDir(g, f.hub), change, ptrs);
  if (!st.ok()) return Fail(st);
  std::printf("root updated\n");
  return 0;
}

}  // namespace

Result<HubDeployResult> DeployFromHub(const Globals& g, const HubDeployRequest& r) {
  ASSIGN_OR_RETURN(Resolved res, Resolve(g, r.hub, r.ref, r.trusted_root, r.ca));
  auto& c = res.client;
  const hub::ModelVersion* m = &res.model;
  const hub::ModelFile* model = m->File("model");
  if (!model) return DataLoss(m->name + "@" + m->version + ": the hub lists no model file");
  HubDeployResult out;
  out.name = m->name;
  out.version = m->version;
  out.as = r.as.empty() ? m->name : r.as;
  out.root_file = hub::TrustDirFor(g.home, r.hub) + "/root.json";
  std::error_code ec;
  if (!fs::is_directory(r.repo, ec)) return NotFound("--repo " + r.repo + ": no such directory");
  ASSIGN_OR_RETURN(serve::RepositoryPolicy policy, serve::ReadRepositoryPolicy(r.repo));
  const std::string model_dir = r.repo + "/" + out.as;
  int64_t next = 1;
  for (const auto& e : fs::directory_iterator(model_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (!n.empty() && n.size() < 18 && std::all_of(n.begin(), n.end(), ::isdigit)) {
      next = std::max<int64_t>(next, std::stoll(n) + 1);
    }
  }
  if (r.reuse && next > 1) {
    const std::string last = model_dir + "/" + std::to_string(next - 1);
    auto text = ReadFile(last + "/hub.json");
    json origin = text.ok() ? json::parse(*text, nullptr, false) : json();
    auto sha = Sha256FileHex(last + "/model.rhm");
    if (origin.is_object() && sha.ok() && *sha == model->sha256 &&
        origin.value("sha256", "") == model->sha256 && origin.value("name", "") == m->name &&
        origin.value("version", "") == m->version) {
      ASSIGN_OR_RETURN(out.verdict, serve::CheckVersionPolicy(policy, last));
      out.repo_version = next - 1;
      out.reused = true;
      return out;
    }
  }
  ASSIGN_OR_RETURN(json evidence, hub::CollectEvidence(*c, *m));
  const std::string staging = r.repo + "/.hub-staging/" + out.as + "-" + std::to_string(::getpid());
  fs::remove_all(staging, ec);
  const bool new_model = !fs::is_directory(model_dir, ec);
  const std::string version_dir = staging + "/" + std::to_string(next);
  Status st = MakeDirs(version_dir);
  if (st.ok()) st = c->Download(*model, version_dir + "/model.rhm");
  if (st.ok()) {
    json origin = {{"hub", r.hub},
                   {"name", m->name},
                   {"version", m->version},
                   {"sha256", model->sha256},
                   {"publisher", m->publisher},
                   {"published", m->published},
                   {"root_version", c->root().version},
                   {"evidence", evidence}};
    st = WriteFileAtomic(version_dir + "/hub.json", origin.dump(2) + "\n");
  }
  // The server will check the same on load; checking here leaves a repository that requires
  // more than this model has untouched, and says so to whoever deploys.
  if (st.ok()) {
    auto verdict = serve::CheckVersionPolicy(policy, version_dir);
    if (verdict.ok()) {
      out.verdict = *verdict;
    } else {
      st = verdict.status();
    }
  }
  if (st.ok() && new_model) {
    st = WriteFileAtomic(staging + "/config.toml",
                         "# Installed by `ronghe hub deploy` from " + m->name + "@" + m->version +
                             ". Batching as docs/serving.md describes.\n[batching]\n"
                             "max_batch_size = 32\nmax_queue_delay_us = 500\n");
  }
  if (st.ok()) {
    if (new_model) {
      fs::rename(staging, model_dir, ec);
    } else {
      fs::rename(version_dir, model_dir + "/" + std::to_string(next), ec);
    }
    if (ec) st = Unavailable(model_dir + ": " + ec.message());
  }
  fs::remove_all(staging, ec);
  fs::remove(r.repo + "/.hub-staging", ec);  // only when empty
  if (!st.ok()) {
    // The staged copy's path means nothing to the user: name the version it would have been.
    std::string msg = st.message();
    const auto at = msg.find(version_dir);
    if (at != std::string::npos) {
      msg.replace(at, version_dir.size(), model_dir + "/" + std::to_string(next));
    }
    return Status(st.code(), msg);
  }
  out.repo_version = next;
  return out;
}

void AddHubCommands(CLI::App& root, CommandContext& ctx) {
  CLI::App* hub = root.add_subcommand("hub", "The model hub: signed, versioned models (TUF)");
  hub->require_subcommand(1);

  auto kf = Flags<KeygenFlags>();
  CLI::App* keygen =
      hub->add_subcommand("keygen", "Make an Ed25519 key pair: DIR/hub.key (0600), DIR/hub.pub");
  keygen->add_option("--out", kf->out, "Directory for the pair")->required();
  ctx.On(keygen, [kf](const Globals&) { return CmdKeygen(*kf); });

  auto inf = Flags<InitFlags>();
  CLI::App* init = hub->add_subcommand("init", "Create a hub: root metadata signed by --root-key");
  init->add_option("--hub", inf->hub, "Hub directory (default $RONGHE_HOME/hub)");
  init->add_option("--root-key", inf->root_key, "The root role's private key (hub.key)")
      ->required();
  init->add_option("--publisher", inf->publishers,
                   "A publisher's public key (hub.pub); repeatable");
  init->add_option("--certifier", inf->certifiers,
                   "A certifier's public key (hub.pub); repeatable");
  ctx.On(init, [inf](const Globals& g) { return CmdInit(g, *inf); });

  auto pf = Flags<PublishFlags>();
  CLI::App* publish = hub->add_subcommand("publish", "Publish a model version, signed by --key");
  publish->add_option("--hub", pf->hub, "Hub directory (default $RONGHE_HOME/hub)");
  publish->add_option("--model", pf->model, "The model artifact (.rhm)")->required();
  publish->add_option("--name", pf->name, "Model name ([a-z0-9._-])")->required();
  publish->add_option("--version", pf->version, "Version, dotted numbers (only goes up)")
      ->required();
  publish->add_option("--card", pf->card, "The model card (Markdown)")->required();
  publish->add_option("--key", pf->key, "A publisher key of the hub's root (hub.key)")->required();
  ctx.On(publish, [pf](const Globals& g) { return CmdPublish(g, *pf); });

  auto add_client = [&](const char* name, const char* what, bool ref, bool out, bool text) {
    auto cf = Flags<ClientFlags>();
    CLI::App* c = hub->add_subcommand(name, what);
    c->add_option("--hub", cf->hub,
                  "Hub directory or URL of a `ronghe hub serve` (default $RONGHE_HOME/hub)");
    c->add_option("--hub-ca", cf->ca, "PEM CA bundle for an https:// hub (default: the system's)");
    c->add_option("--trusted-root", cf->trusted_root,
                  "Pin the hub's root metadata (default: trust its first root on first use)");
    if (ref) c->add_option("model", cf->ref, "NAME or NAME@VERSION")->required();
    if (text) c->add_option("text", cf->text, "Text to look for in names and cards")->required();
    if (out) c->add_option("--out", cf->out, "Directory to write the files to")->required();
    if (!out) c->add_flag("--json", cf->json, "JSON output");
    return std::make_pair(c, cf);
  };
  auto [pull, pullf] = add_client("pull", "Download a model version, verified", true, true, false);
  ctx.On(pull, [pullf = pullf](const Globals& g) { return CmdPull(g, *pullf); });
  auto [show, showf] =
      add_client("show", "A model version: files, card, provenance, signers", true, false, false);
  ctx.On(show, [showf = showf](const Globals& g) { return CmdShow(g, *showf); });
  auto [search, searchf] =
      add_client("search", "Models whose name or card mentions TEXT", false, false, true);
  ctx.On(search, [searchf = searchf](const Globals& g) { return CmdSearch(g, *searchf); });

  auto rf = Flags<ClientFlags>();
  CLI::App* refresh =
      hub->add_subcommand("refresh", "Re-sign the hub's timestamp and snapshot (fresh expiry)");
  refresh->add_option("--hub", rf->hub, "Hub directory (default $RONGHE_HOME/hub)");
  ctx.On(refresh, [rf](const Globals& g) {
    Status st = hub::Refresh(HubDir(g, rf->hub));
    if (st.ok()) std::printf("timestamp re-signed\n");
    return Done(st);
  });

  struct ServeFlags {
    std::string hub, host = "0.0.0.0", cert, key;
    int port = 8080;
  };
  auto sf = Flags<ServeFlags>();
  CLI::App* serve =
      hub->add_subcommand("serve", "Serve a hub directory over HTTP(S), with an HTML listing");
  serve->add_option("--dir", sf->hub, "Hub directory (default $RONGHE_HOME/hub)");
  serve->add_option("--host", sf->host, "Address to listen on (default 0.0.0.0)");
  serve->add_option("--http", sf->port, "Port (default 8080; 0 = any free port)")
      ->check(CLI::Range(0, 65535));
  serve->add_option("--tls-cert", sf->cert, "PEM certificate chain: serve HTTPS");
  serve->add_option("--tls-key", sf->key, "PEM private key of --tls-cert (0600)");
  ctx.On(serve, [sf](const Globals& g) {
    hub::HubServeOptions o;
    o.dir = HubDir(g, sf->hub);
    o.host = sf->host;
    o.port = sf->port;
    o.tls.cert_file = sf->cert;
    o.tls.key_file = sf->key;
    // Blocked before any server thread exists, so SIGINT/SIGTERM reach only the sigwait below.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    auto s = hub::HubServer::Start(o);
    if (!s.ok()) return Fail(s.status());
    std::printf("serving hub %s on %s://%s:%d\n", o.dir.c_str(), o.tls.enabled() ? "https" : "http",
                o.host.c_str(), (*s)->port());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    (*s)->Stop();
    return 0;
  });

  auto cf = Flags<CertifyFlags>();
  CLI::App* certify = hub->add_subcommand(
      "certify", "Check a published model (docs/hub.md) and sign an attestation of the result");
  certify->add_option("--hub", cf->hub, "Hub directory (default $RONGHE_HOME/hub)");
  certify->add_option("model", cf->ref, "NAME or NAME@VERSION")->required();
  certify->add_option("--key", cf->key, "A certifier key of the hub's root (hub.key)")->required();
  certify
      ->add_option("--tolerance", cf->tolerance,
                   "Largest difference between a claimed and a measured metric (default 0.005)")
      ->check(CLI::NonNegativeNumber);
  ctx.On(certify, [cf](const Globals& g) { return CmdCertify(g, *cf); });

  auto df = Flags<DeployFlags>();
  CLI::App* deploy = hub->add_subcommand(
      "deploy", "Verify a model and install it as the next version of a serving repository");
  deploy->add_option("--hub", df->hub,
                     "Hub directory or URL of a `ronghe hub serve` (default $RONGHE_HOME/hub)");
  deploy->add_option("--hub-ca", df->ca, "PEM CA bundle for an https:// hub");
  deploy->add_option("--trusted-root", df->trusted_root, "Pin the hub's root metadata");
  deploy->add_option("model", df->ref, "NAME or NAME@VERSION")->required();
  deploy->add_option("--repo", df->repo, "The serving repository (ronghe serve --repo)")
      ->required();
  deploy->add_option("--as", df->as, "Model name in the repository (default: the hub's name)");
  ctx.On(deploy, [df](const Globals& g) { return CmdDeploy(g, *df); });

  auto rootf = Flags<RootFlags>();
  CLI::App* rootc = hub->add_subcommand(
      "root", "Write the next root version: grant or revoke keys, change thresholds");
  rootc->add_option("--hub", rootf->hub, "Hub directory (default $RONGHE_HOME/hub)");
  rootc
      ->add_option("--key", rootf->keys,
                   "Root keys signing the new root: a threshold of the old root's and of the new "
                   "one's; repeatable")
      ->required();
  rootc->add_option("--grant", rootf->grant,
                    "ROLE=PUBLIC_KEY_FILE (roles: root, targets, certifier)");
  rootc->add_option("--revoke", rootf->revoke, "ROLE=KEY_ID or ROLE=KEY_FILE");
  rootc->add_option("--threshold", rootf->thresholds, "ROLE=N");
  ctx.On(rootc, [rootf](const Globals& g) { return CmdRoot(g, *rootf); });
}

}  // namespace ronghe::cli
