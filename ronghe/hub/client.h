// The hub's clients: the TUF client workflow over a hub directory (and, with `ronghe hub serve`,
// over HTTP), with the last trusted metadata kept so that nothing older is ever accepted again.
//   1. root: the trusted root (pinned with `trusted_root`, else the hub's first root on first
//      use), then each next version N+1.root.json signed by a threshold of the old root's and its
//      own root keys
//   2. timestamp: signed by the timestamp role, not older than the trusted one, not expired
//   3. snapshot: exactly the version and sha256 the timestamp names, signed, not expired, naming
//      targets metadata not older than the trusted one
//   4. targets: exactly the version and sha256 the snapshot names, signed by a publisher key
//   5. files: exactly the length and sha256 the targets metadata names
// Each refusal names the file and the reason.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/hash.h"
#include "ronghe/base/status.h"
#include "ronghe/hub/metadata.h"

namespace ronghe::hub {

// Where a hub's files come from.
class HubSource {
 public:
  virtual ~HubSource() = default;
  // The file at `rel` (relative to the hub), at most `max_bytes` long (longer: DataLoss).
  // NotFound when it does not exist.
  virtual Result<std::string> Fetch(const std::string& rel, int64_t max_bytes) = 0;
  // Streams `rel` into `out`, refusing more than `max_bytes`; the bytes also go through `hash`
  // (one pass: verification costs what SHA-256 costs).
  virtual Status FetchTo(const std::string& rel, int64_t max_bytes, const std::string& out,
                         Sha256Hasher* hash) = 0;
  virtual std::string Describe() const = 0;  // for messages
};

// A relative path of plain segments (none empty, ".", ".."; no backslash): the only paths a hub
// names and a client reads.
bool PlainRelativePath(const std::string& path);

// A hub directory, or the URL of a `ronghe hub serve` (http:// or https://; `ca_file` is the PEM
// bundle that HTTPS servers are checked against, "" = the system's).
Result<std::unique_ptr<HubSource>> OpenHubSource(const std::string& hub,
                                                 const std::string& ca_file = "");

struct ClientOptions {
  std::string hub;           // a hub directory or URL
  std::string ca_file;       // Default: "" = the system's CAs, for an https:// hub
  std::string trust_dir;     // the last trusted metadata of this hub (created 0700)
  std::string trusted_root;  // Default: "" = trust the hub's 1.root.json on first use; else a
                             // root.json to start from (pinning)
  Clock::time_point now = Clock::now();  // tests move the clock
};

// The trust directory for `hub` under a ronghe home: HOME/hub-trust/<sha256(hub)[:16]>.
std::string TrustDirFor(const std::string& home, const std::string& hub);

struct ModelFile {
  std::string path;  // relative to targets/
  int64_t length = 0;
  std::string sha256;
  std::string kind;  // model | card | provenance
};

struct ModelVersion {
  std::string name, version, publisher, published;
  std::vector<ModelFile> files;
  const ModelFile* File(const std::string& kind) const;
};

class HubClient {
 public:
  static Result<std::unique_ptr<HubClient>> Open(const ClientOptions& options);

  // The TUF update: afterwards Models() reflects the hub's current, verified targets.
  Status Update();

  std::vector<ModelVersion> Models() const;
  // NAME@VERSION, or NAME's highest version when `version` is "".
  Result<ModelVersion> Find(const std::string& name, const std::string& version) const;
  // A file of `m`, checked against its length and sha256 (streamed to `out`, atomically).
  Status Download(const ModelFile& f, const std::string& out) const;
  // The same, into memory (cards, provenance).
  Result<std::string> Read(const ModelFile& f) const;

  const Root& root() const { return root_; }
  const nlohmann::json& targets() const { return targets_; }
  // The verified targets metadata as signed (the envelope), and every root version the hub
  // holds up to the trusted one, as signed: what a deployment keeps as evidence (evidence.h).
  const nlohmann::json& targets_envelope() const { return targets_envelope_; }
  Result<std::vector<nlohmann::json>> RootChain();
  HubSource& source() { return *source_; }

 private:
  HubClient() = default;
  Status LoadTrusted();
  Status UpdateRoot();
  Status Save(const std::string& role, const nlohmann::json& envelope);

  ClientOptions options_;
  std::unique_ptr<HubSource> source_;
  Root root_;
  nlohmann::json trusted_timestamp_, trusted_snapshot_, trusted_targets_;  // signed parts
  nlohmann::json targets_;           // the verified targets metadata's signed part
  nlohmann::json targets_envelope_;  // ... and its envelope
};

}  // namespace ronghe::hub
