// Deployment evidence: what a serving repository keeps beside a model installed from a hub
// (REPO/MODEL/VERSION/hub.json), so that a server can check on every load, with no hub
// reachable, that the artifact is the one a trusted publisher signed and, where the repository
// asks, that a certifier of the same root certified it (`[policy] require = "certified"`).
//
// hub.json: {"hub", "name", "version", "sha256", "publisher", "published", "root_version",
//            "evidence": {"roots": [every root envelope, 1..N],
//                         "targets": the signed targets metadata naming the artifact,
//                         "attestations": [certification envelopes]}}
// The evidence is checked from a root the repository pins (its `trusted_roots`), never from a
// root the evidence carries alone: a forged hub.json with its own keys is refused. Expiry is not
// checked here: freshness (rollback, freeze) is what `hub deploy` checked when it fetched; a
// load checks authenticity and certification, which do not expire.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/hub/client.h"
#include "ronghe/hub/metadata.h"

namespace ronghe::hub {

enum class Requirement {
  kNone,       // load anything (the default)
  kSigned,     // the artifact must be what a publisher of a trusted hub signed
  kCertified,  // ... and a certifier of that hub's root must have certified it (verdict pass)
};
// "none" | "signed" | "certified".
Result<Requirement> ParseRequirement(const std::string& s);
const char* RequirementName(Requirement r);

struct TrustedRoot {
  std::string path;
  nlohmann::json envelope;
  Root root;
};
// A root.json that vouches for itself (a threshold of its own root keys).
Result<TrustedRoot> ReadTrustedRoot(const std::string& path);

// The evidence object for `m`, from an updated client (its root chain, verified targets and the
// valid attestations of `m`).
Result<nlohmann::json> CollectEvidence(HubClient& client, const ModelVersion& m);

struct EvidenceVerdict {
  std::string name, version;
  std::string publisher;                // key id that signed the targets entry
  int64_t root_version = 0;             // the root the evidence was checked under
  std::vector<std::string> certifiers;  // key ids whose certification passed
  std::string Summary() const;
};

// Checks `deployed` (a hub.json) for the artifact with `artifact_sha256` and `artifact_length`
// against `trusted` under `requirement`. Errors name `what` (the version directory) and why.
Result<EvidenceVerdict> VerifyEvidence(const nlohmann::json& deployed,
                                       const std::vector<TrustedRoot>& trusted,
                                       const std::string& artifact_sha256, int64_t artifact_length,
                                       Requirement requirement, const std::string& what);

}  // namespace ronghe::hub
