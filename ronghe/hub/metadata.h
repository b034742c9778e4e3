// TUF metadata (The Update Framework, spec 1.0) as the hub uses it: four roles, each a signed
// envelope {"signed": {...}, "signatures": [{"keyid", "sig"}]} over the canonical JSON of
// "signed".
//   root       the keys of every role and each role's signature threshold; signed by a threshold
//              of the root keys of this version and, for a rotation, of the previous one
//   targets    every published file: path -> length, sha256, and who published it
//   snapshot   the version (and hash) of the targets metadata that belong together
//   timestamp  the version and hash of the current snapshot; short-lived, so a frozen mirror
//              shows up as expired
// Roles here: root, targets (publishers), snapshot and timestamp (the hub's online key),
// certifier (keys whose attestations count as certification).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/hub/keys.h"

namespace ronghe::hub {

using Clock = std::chrono::system_clock;

struct RoleKeys {
  std::vector<std::string> keyids;
  int threshold = 1;
};

struct Root {
  int64_t version = 1;
  std::string expires;                    // ISO 8601 UTC, "2027-12-01T00:00:00Z"
  std::map<std::string, PublicKey> keys;  // by key id
  std::map<std::string, RoleKeys> roles;  // root, targets, snapshot, timestamp, certifier

  nlohmann::json ToJson() const;  // the "signed" part
  static Result<Root> FromJson(const nlohmann::json& signed_part);
  // Adds `key` to `role` (and to the key table).
  void Grant(const std::string& role, const PublicKey& key);
  // Whether `keyid` belongs to `role`.
  bool Holds(const std::string& role, const std::string& keyid) const;
};

// "2027-12-01T00:00:00Z" for now + `seconds`.
std::string ExpiresIn(int64_t seconds, Clock::time_point now = Clock::now());
Result<Clock::time_point> ParseTime(const std::string& iso);

// The envelope of `signed_part`, signed by each of `keys`.
Result<nlohmann::json> SignEnvelope(const nlohmann::json& signed_part,
                                    const std::vector<const SigningKey*>& keys);

// Checks that `envelope` is well formed, of `type` ("root", "targets", ...), and carries valid
// signatures of at least `role`'s threshold of distinct keys of `root`; returns "signed". Errors
// name `what` (the file) and why.
Result<nlohmann::json> VerifyRole(const nlohmann::json& envelope, const Root& root,
                                  const std::string& role, const std::string& type,
                                  const std::string& what);
// FailedPrecondition "WHAT expired at T" when `signed_part` is past its expiry at `now`.
Status CheckNotExpired(const nlohmann::json& signed_part, Clock::time_point now,
                       const std::string& what);
int64_t VersionOf(const nlohmann::json& signed_part);

// Dotted numeric versions ("1.2.0"): < 0, 0, > 0. ParseVersion refuses anything else.
Status CheckModelVersion(const std::string& v);
int CompareVersions(const std::string& a, const std::string& b);
// A model name as the hub accepts it: [a-z0-9][a-z0-9._-]*, at most 100 characters.
Status CheckModelName(const std::string& name);

}  // namespace ronghe::hub
