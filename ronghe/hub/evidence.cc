#include "ronghe/hub/evidence.h"

#include "ronghe/base/file.h"
#include "ronghe/hub/attest.h"
#include "ronghe/hub/keys.h"

namespace ronghe::hub {

using nlohmann::json;

Result<Requirement> ParseRequirement(const std::string& s) {
  if (s == "none") return Requirement::kNone;
  if (s == "signed") return Requirement::kSigned;
  if (s == "certified") return Requirement::kCertified;
  return InvalidArgument("'" + s.substr(0, 64) +
                         "' is not a requirement (none, signed, certified)");
}

const char* RequirementName(Requirement r) {
  switch (r) {
    case Requirement::kNone:
      return "none";
    case Requirement::kSigned:
      return "signed";
    case Requirement::kCertified:
      return "certified";
  }
  return "?";
}

Result<TrustedRoot> ReadTrustedRoot(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  TrustedRoot t;
  t.path = path;
  t.envelope = json::parse(text, nullptr, false);
  if (t.envelope.is_discarded() || !t.envelope.is_object() || !t.envelope.contains("signed")) {
    return InvalidArgument(path + ": not a root metadata envelope");
  }
  ASSIGN_OR_RETURN(t.root, Root::FromJson(t.envelope["signed"]));
  RETURN_IF_ERROR(VerifyRole(t.envelope, t.root, "root", "root", path).status());
  return t;
}

Result<json> CollectEvidence(HubClient& client, const ModelVersion& m) {
  ASSIGN_OR_RETURN(std::vector<json> roots, client.RootChain());
  json attestations = json::array();
  for (const auto& v : CertificationsOf(client, m)) {
    if (v.valid) attestations.push_back(v.envelope);
  }
  return json{
      {"roots", roots}, {"targets", client.targets_envelope()}, {"attestations", attestations}};
}

std::string EvidenceVerdict::Summary() const {
  std::string s = name + "@" + version + " signed by publisher " + publisher.substr(0, 16) +
                  " (hub root version " + std::to_string(root_version) + ")";
  for (const auto& c : certifiers) s += ", certified by " + c.substr(0, 16);
  return s;
}

namespace {

// The root `trusted` pins, walked forward through the evidence's later root versions, each signed
// by a threshold of the previous root's root keys and of its own (the client's rotation rule).
Result<Root> WalkRoots(const json& roots, const std::vector<TrustedRoot>& trusted,
                       const std::string& what) {
  if (!roots.is_array() || roots.empty()) return DataLoss(what + ": the evidence holds no root");
  for (const TrustedRoot& t : trusted) {
    const std::string pinned = Canonical(t.envelope["signed"]);
    size_t start = roots.size();
    for (size_t i = 0; i < roots.size(); ++i) {
      if (roots[i].is_object() && roots[i].contains("signed") &&
          Canonical(roots[i]["signed"]) == pinned) {
        start = i;
        break;
      }
    }
    if (start == roots.size()) continue;
    Root cur = t.root;
    for (size_t i = start + 1; i < roots.size(); ++i) {
      const std::string w = what + "/hub.json: root version " + std::to_string(cur.version + 1);
      RETURN_IF_ERROR(VerifyRole(roots[i], cur, "root", "root", w).status());
      ASSIGN_OR_RETURN(Root next, Root::FromJson(roots[i]["signed"]));
      RETURN_IF_ERROR(VerifyRole(roots[i], next, "root", "root", w).status());
      if (next.version != cur.version + 1) {
        return DataLoss(w + ": carries version " + std::to_string(next.version));
      }
      cur = std::move(next);
    }
    return cur;
  }
  std::string pins;
  for (const auto& t : trusted) pins += (pins.empty() ? "" : ", ") + t.path;
  return PermissionDenied(what + ": from a hub this repository does not trust (no root in its " +
                          "hub.json matches a pinned root: " + (pins.empty() ? "none" : pins) +
                          ")");
}

}  // namespace

Result<EvidenceVerdict> VerifyEvidence(const json& deployed,
                                       const std::vector<TrustedRoot>& trusted,
                                       const std::string& artifact_sha256, int64_t artifact_length,
                                       Requirement requirement, const std::string& what) {
  EvidenceVerdict v;
  if (!deployed.is_object() || !deployed.contains("evidence") ||
      !deployed["evidence"].is_object()) {
    return PermissionDenied(
        what + "/hub.json: holds no hub evidence (install it with `ronghe hub " + "deploy`)");
  }
  const json& ev = deployed["evidence"];
  v.name = deployed.value("name", "");
  v.version = deployed.value("version", "");
  ASSIGN_OR_RETURN(Root root, WalkRoots(ev.value("roots", json()), trusted, what));
  v.root_version = root.version;
  ASSIGN_OR_RETURN(json targets, VerifyRole(ev.value("targets", json()), root, "targets", "targets",
                                            what + "/hub.json: targets metadata"));
  const std::string path = v.name + "/" + v.version + "/model.rhm";
  const json all = targets.value("targets", json::object());
  if (!all.is_object() || !all.contains(path) || !all[path].is_object()) {
    return PermissionDenied(what + ": the signed targets metadata does not list " + path);
  }
  const json& t = all[path];
  const json custom = t.value("custom", json::object());
  const json hashes = t.value("hashes", json::object());
  if (!custom.is_object() || custom.value("name", "") != v.name ||
      custom.value("version", "") != v.version || custom.value("kind", "") != "model" ||
      !hashes.is_object()) {
    return DataLoss(what + ": the signed entry for " + path + " is not this model's artifact");
  }
  if (t.value("length", int64_t{-1}) != artifact_length ||
      hashes.value("sha256", "") != artifact_sha256) {
    return DataLoss(what + "/model.rhm: sha256 " + artifact_sha256.substr(0, 16) + "... (" +
                    std::to_string(artifact_length) + " bytes) is not what the publisher signed " +
                    "for " + v.name + "@" + v.version + " (tampered or replaced)");
  }
  v.publisher = custom.value("publisher", "");
  if (requirement != Requirement::kCertified) return v;

  std::string reasons;
  const json atts = ev.value("attestations", json::array());
  for (size_t i = 0; atts.is_array() && i < atts.size(); ++i) {
    const json& env = atts[i];
    const std::string keyid = env.is_object() && env.contains("signatures") &&
                                      env["signatures"].is_array() && !env["signatures"].empty() &&
                                      env["signatures"][0].is_object()
                                  ? env["signatures"][0].value("keyid", "")
                                  : "";
    auto c = VerifyAttestation(env, root, keyid, v.name, v.version, artifact_sha256,
                               what + "/hub.json: attestation " + std::to_string(i + 1));
    if (!c.ok()) {
      reasons += "; " + c.status().message();
      continue;
    }
    if (c->passed()) {
      v.certifiers.push_back(keyid);
      continue;
    }
    for (const auto& k : c->checks) {
      if (!k.passed) {
        reasons += "; certification by " + keyid.substr(0, 16) + " failed check " + k.name +
                   (k.detail.empty() ? "" : " (" + k.detail + ")");
        break;
      }
    }
  }
  if (v.certifiers.empty()) {
    return PermissionDenied(
        what + ": " + v.name + "@" + v.version + " is not certified" +
        (reasons.empty() ? ": no certification by a certifier of the hub's root" : reasons));
  }
  return v;
}

}  // namespace ronghe::hub
