// The hub's side: a directory that is a hub (`ronghe hub serve` serves the same tree over HTTP).
//   metadata/1.root.json, 2.root.json, ... root.json   every root version (clients walk the chain)
//   metadata/N.targets.json, targets.json              consistent snapshots: clients fetch the
//   metadata/N.snapshot.json, snapshot.json            exact version the level above names
//   metadata/timestamp.json
//   targets/NAME/VERSION/model.rhm, card.md, provenance.json
//   attestations/NAME/VERSION/KEYID.json               certifications (signed statements)
//   keys/online.key                                    the snapshot and timestamp role's key
//                                                      (0600; never served)
// Writers take HUB/.lock (flock), so concurrent publishers of different models both land.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/hub/keys.h"
#include "ronghe/hub/metadata.h"

namespace ronghe::hub {

struct ExpiryOptions {
  int64_t root_s = 365 * 86400;     // Default: a year.
  int64_t targets_s = 365 * 86400;  // Default: a year.
  int64_t snapshot_s = 30 * 86400;  // Default: 30 days.
  int64_t timestamp_s = 7 * 86400;  // Default: 7 days; `ronghe hub refresh` re-signs it, and
                                    // `hub serve` does so daily.
};

struct InitOptions {
  std::vector<PublicKey> publishers;  // Default: none beyond the root key, which may publish.
  std::vector<PublicKey> certifiers;  // Default: none beyond the root key, which may certify.
  ExpiryOptions expiry;
};

// Creates the hub at `dir` (which must not hold one): root version 1 with `root_key` as the root
// role (threshold 1), a fresh online key for snapshot and timestamp, empty targets.
Status InitHub(const std::string& dir, const SigningKey& root_key, const InitOptions& options);

struct PublishRequest {
  std::string model_path;  // a ronghe artifact (.rhm), or an edge artifact (.rhe: kept as
                           // model.rhe, for ronghe-edge agents)
  std::string name, version;
  std::string card_path;      // the model card (Markdown)
  nlohmann::json provenance;  // written as provenance.json (the card's machine-readable part)
};

// Publishes one model version, signed by `publisher` (a key of the targets role): copies the files
// under targets/NAME/VERSION/, adds them to targets metadata, and re-signs snapshot and timestamp.
// A version not above every published version of NAME is refused.
Status Publish(const std::string& dir, const PublishRequest& request, const SigningKey& publisher,
               const ExpiryOptions& expiry = {});

// Re-signs the timestamp (and snapshot) with fresh expiry: what keeps clients from reading the
// hub as frozen.
Status Refresh(const std::string& dir, const ExpiryOptions& expiry = {});

struct RootChange {
  std::vector<std::pair<std::string, PublicKey>> grant;     // role -> key to add
  std::vector<std::pair<std::string, std::string>> revoke;  // role -> key id to remove
  std::vector<std::pair<std::string, int>> thresholds;      // role -> new threshold
};
// Writes root version N+1 with `change`, signed by `keys`: the new root needs a threshold of the
// old root's root keys and of its own (TUF's rotation rule); refused otherwise.
Status UpdateRoot(const std::string& dir, const RootChange& change,
                  const std::vector<const SigningKey*>& keys, const ExpiryOptions& expiry = {});

// Stores a certifier's attestation envelope (already signed) for NAME@VERSION.
Status StoreAttestation(const std::string& dir, const std::string& name, const std::string& version,
                        const std::string& keyid, const nlohmann::json& envelope);

}  // namespace ronghe::hub
