#include "ronghe/hub/attest.h"

namespace ronghe::hub {

using nlohmann::json;

bool Certification::passed() const {
  if (checks.empty()) return false;
  for (const auto& c : checks) {
    if (!c.passed) return false;
  }
  return true;
}

json StatementJson(const Certification& c) {
  json checks = json::array();
  for (const auto& k : c.checks) {
    checks.push_back({{"name", k.name}, {"passed", k.passed}, {"detail", k.detail}});
  }
  return {{"_type", kStatementType},
          {"version", 1},
          {"subject",
           {{{"name", c.name + "@" + c.version + "/model.rhm"},
             {"digest", {{"sha256", c.artifact_sha256}}}}}},
          {"predicateType", kCertificationPredicate},
          {"predicate",
           {{"model", c.name},
            {"version", c.version},
            {"verdict", c.passed() ? "pass" : "fail"},
            {"checks", checks},
            {"certifier", c.certifier},
            {"certified_at", c.certified_at}}}};
}

Result<json> SignCertification(Certification c, const SigningKey& key) {
  c.certifier = key.KeyId();
  if (c.certified_at.empty()) c.certified_at = ExpiresIn(0);
  return SignEnvelope(StatementJson(c), {&key});
}

Result<Certification> VerifyAttestation(const json& env, const Root& root, const std::string& keyid,
                                        const std::string& name, const std::string& version,
                                        const std::string& artifact_sha256,
                                        const std::string& what) {
  if (!root.Holds("certifier", keyid)) {
    return PermissionDenied(what + ": key " + keyid.substr(0, 16) +
                            " is not a certifier of the hub's root");
  }
  // A root whose certifier role has a threshold above 1 is not what one attestation can meet;
  // each attestation counts alone, by one key.
  Root one = root;
  one.roles["certifier"].threshold = 1;
  ASSIGN_OR_RETURN(json st, VerifyRole(env, one, "certifier", kStatementType, what));
  if (env["signatures"].size() != 1 || env["signatures"][0].value("keyid", "") != keyid) {
    return PermissionDenied(what + ": not signed by key " + keyid.substr(0, 16) + " alone");
  }
  const json subj = st.value("subject", json::array());
  const std::string digest = subj.is_array() && !subj.empty() && subj[0].is_object() &&
                                     subj[0].contains("digest") && subj[0]["digest"].is_object()
                                 ? subj[0]["digest"].value("sha256", "")
                                 : "";
  const json pred = st.value("predicate", json::object());
  if (st.value("predicateType", "") != kCertificationPredicate || !pred.is_object() ||
      digest.empty() || digest != artifact_sha256 || pred.value("model", "") != name ||
      pred.value("version", "") != version) {
    return DataLoss(what + ": about another artifact (subject digest or model differs)");
  }
  Certification c;
  c.name = name;
  c.version = version;
  c.certifier = keyid;
  c.artifact_sha256 = digest;
  c.certified_at = pred.value("certified_at", "");
  const json checks = pred.value("checks", json::array());
  if (!checks.is_array()) return DataLoss(what + ": checks are not a list");
  for (const auto& k : checks) {
    if (!k.is_object()) return DataLoss(what + ": a check is not an object");
    c.checks.push_back({k.value("name", ""), k.value("passed", false), k.value("detail", "")});
  }
  // The verdict is signed beside the checks; a statement whose two disagree counts as failed.
  if (pred.value("verdict", "") != "pass" && c.passed()) {
    c.checks.push_back({"verdict", false, "the statement's verdict is not 'pass'"});
  }
  return c;
}

std::vector<VerifiedCertification> CertificationsOf(HubClient& client, const ModelVersion& m) {
  std::vector<VerifiedCertification> out;
  const ModelFile* model = m.File("model");
  auto role = client.root().roles.find("certifier");
  if (!model || role == client.root().roles.end()) return out;
  for (const std::string& keyid : role->second.keyids) {
    const std::string rel = "attestations/" + m.name + "/" + m.version + "/" + keyid + ".json";
    auto text = client.source().Fetch(rel, 1 << 20);
    if (!text.ok()) continue;  // this certifier has not certified it
    VerifiedCertification v;
    v.certification.name = m.name;
    v.certification.version = m.version;
    v.certification.certifier = keyid;
    v.envelope = json::parse(*text, nullptr, false);
    auto c = VerifyAttestation(v.envelope, client.root(), keyid, m.name, m.version, model->sha256,
                               client.source().Describe() + "/" + rel);
    if (c.ok()) {
      v.certification = std::move(c).value();
      v.valid = true;
    } else {
      v.problem = c.status().message();
    }
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace ronghe::hub
