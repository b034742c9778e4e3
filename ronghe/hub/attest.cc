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
    json env = json::parse(*text, nullptr, false);
    // A root whose certifier role has a threshold above 1 is not what one attestation can meet;
    // each attestation counts alone, by one key.
    Root one = client.root();
    one.roles["certifier"].threshold = 1;
    auto s =
        VerifyRole(env, one, "certifier", kStatementType, client.source().Describe() + "/" + rel);
    if (!s.ok()) {
      v.problem = s.status().message();
      out.push_back(v);
      continue;
    }
    const json& st = *s;
    const json subj = st.value("subject", json::array());
    const std::string digest = subj.is_array() && !subj.empty() && subj[0].contains("digest")
                                   ? subj[0]["digest"].value("sha256", "")
                                   : "";
    const json pred = st.value("predicate", json::object());
    if (st.value("predicateType", "") != kCertificationPredicate || digest != model->sha256 ||
        pred.value("model", "") != m.name || pred.value("version", "") != m.version) {
      v.problem = rel + ": about another artifact (subject digest or model differs)";
      out.push_back(v);
      continue;
    }
    if (!env["signatures"].empty() && env["signatures"][0].value("keyid", "") != keyid) {
      v.problem = rel + ": signed by another key than its file name says";
      out.push_back(v);
      continue;
    }
    v.certification.artifact_sha256 = digest;
    v.certification.certified_at = pred.value("certified_at", "");
    for (const auto& k : pred.value("checks", json::array())) {
      v.certification.checks.push_back(
          {k.value("name", ""), k.value("passed", false), k.value("detail", "")});
    }
    v.valid = true;
    out.push_back(v);
  }
  return out;
}

}  // namespace ronghe::hub
