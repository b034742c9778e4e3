// Installing a hub model into a serving repository: `ronghe hub deploy` and `ronghe serve --hub`.
#pragma once

#include <cstdint>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/cli/command.h"

namespace ronghe::cli {

struct HubDeployRequest {
  std::string hub;           // a hub directory or URL
  std::string ref;           // NAME or NAME@VERSION
  std::string repo;          // the serving repository (must exist)
  std::string as;            // Default: "" = the hub's name.
  std::string trusted_root;  // Default: "" = trust on first use (ClientOptions::trusted_root)
  std::string ca;            // Default: "" = the system's CAs
  // Default: false. When the repository's highest version of the model already is this artifact
  // (same sha256 in its hub.json), use it instead of installing another copy.
  bool reuse = false;
};

struct HubDeployResult {
  std::string name, version, as;
  int64_t repo_version = 0;
  bool reused = false;
  std::string verdict;    // what the repository's policy verified ("" when it requires nothing)
  std::string root_file;  // the hub root the client trusted (its trust directory's root.json)
};

// Verifies NAME[@VERSION] on the hub (TUF: signatures, versions, expiry, sha256), then installs it
// as the next version of REPO/AS with its evidence (hub.json; hub/evidence.h) and, for a new
// model, a default config.toml. The version is staged under REPO/.hub-staging and moved in with
// one rename, so a watching server sees all of it or nothing. A repository whose policy
// (repository.toml) the model does not meet is left untouched and the error says why.
Result<HubDeployResult> DeployFromHub(const Globals& g, const HubDeployRequest& r);

}  // namespace ronghe::cli
