// Certifications: in-toto statements (https://in-toto.io/Statement/v1) about one published model
// version, signed by a key of the hub root's certifier role, stored beside the model at
// attestations/NAME/VERSION/KEYID.json. A statement binds the artifact's sha256 (its subject) to
// the checks the certifier ran and their results; clients find them by the certifier keys the
// root lists (no listing to trust), and count one only when its signature, its key's role and
// its subject digest all hold. Deleting an attestation makes a model read as uncertified: it
// fails safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/keys.h"
#include "ronghe/hub/metadata.h"

namespace ronghe::hub {

constexpr const char* kStatementType = "https://in-toto.io/Statement/v1";
constexpr const char* kCertificationPredicate = "https://ronghe.dev/hub/certification/v1";

struct CheckResult {
  std::string name;  // e.g. "format", "finite_weights", "metrics_reproduced"
  bool passed = false;
  std::string detail;
};

struct Certification {
  std::string name, version, artifact_sha256;
  std::vector<CheckResult> checks;
  bool passed() const;    // every check passed
  std::string certifier;  // key id
  std::string certified_at;
};

// The statement's JSON (the envelope's "signed" part).
nlohmann::json StatementJson(const Certification& c);
// Signs `c` with `key` (its key id becomes c.certifier).
Result<nlohmann::json> SignCertification(Certification c, const SigningKey& key);

struct VerifiedCertification {
  Certification certification;
  bool valid = false;       // signature by a certifier key of the root, subject = the artifact
  std::string problem;      // why not, when !valid
  nlohmann::json envelope;  // as stored (deploy keeps it as evidence)
};

// One stored attestation `envelope` (named `what` in errors): signed by `keyid`, a certifier key
// of `root` (each attestation counts alone, whatever the role's threshold), a statement about
// NAME@VERSION whose subject is the artifact with `artifact_sha256`. Returns what it certifies.
Result<Certification> VerifyAttestation(const nlohmann::json& envelope, const Root& root,
                                        const std::string& keyid, const std::string& name,
                                        const std::string& version,
                                        const std::string& artifact_sha256,
                                        const std::string& what);

// Every certification the root's certifier keys made for `m`, each verified (NotFound ones are
// skipped). `artifact_sha256` is the signed targets' digest of m's model file.
std::vector<VerifiedCertification> CertificationsOf(HubClient& client, const ModelVersion& m);

}  // namespace ronghe::hub
