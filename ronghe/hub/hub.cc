#include "ronghe/hub/hub.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"

namespace ronghe::hub {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// An exclusive flock on HUB/.lock for the writer's whole update.
class HubLock {
 public:
  static Result<HubLock> Take(const std::string& dir) {
    HubLock l;
    const std::string path = dir + "/.lock";
    l.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l.fd_ < 0) return Unavailable(path + ": " + std::strerror(errno));
    if (::flock(l.fd_, LOCK_EX) != 0)
      return Unavailable(path + ": cannot lock: " + std::strerror(errno));
    return l;
  }
  HubLock(HubLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~HubLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }

 private:
  HubLock() = default;
  int fd_ = -1;
};

Result<json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return DataLoss(path + ": not valid JSON");
  return j;
}

Result<Root> HubRoot(const std::string& dir) {
  ASSIGN_OR_RETURN(json env, ReadJson(dir + "/metadata/root.json"));
  if (!env.contains("signed")) return DataLoss(dir + "/metadata/root.json: not an envelope");
  return Root::FromJson(env["signed"]);
}

json FileMeta(int64_t version, const std::string& bytes) {
  return {{"version", version},
          {"length", static_cast<int64_t>(bytes.size())},
          {"hashes", {{"sha256", Sha256Hex(bytes)}}}};
}

// Writes "N.ROLE.json" and "ROLE.json" (the versioned file first: clients fetch it by version).
Status WriteVersioned(const std::string& dir, const std::string& role, const json& envelope) {
  const std::string text = Canonical(envelope);
  const int64_t v = VersionOf(envelope["signed"]);
  RETURN_IF_ERROR(
      WriteFileAtomic(dir + "/metadata/" + std::to_string(v) + "." + role + ".json", text));
  return WriteFileAtomic(dir + "/metadata/" + role + ".json", text);
}

// New snapshot naming `targets_text`, then a new timestamp naming the snapshot.
Status SignSnapshotAndTimestamp(const std::string& dir, const std::string& targets_text,
                                int64_t targets_version, const ExpiryOptions& e) {
  ASSIGN_OR_RETURN(SigningKey online, SigningKey::Load(dir + "/keys/online.key"));
  int64_t snap_v = 1, ts_v = 1;
  if (auto old = ReadJson(dir + "/metadata/snapshot.json"); old.ok())
    snap_v = VersionOf((*old)["signed"]) + 1;
  if (auto old = ReadJson(dir + "/metadata/timestamp.json"); old.ok())
    ts_v = VersionOf((*old)["signed"]) + 1;
  json snap = {{"_type", "snapshot"},
               {"spec_version", "1.0"},
               {"version", snap_v},
               {"expires", ExpiresIn(e.snapshot_s)},
               {"meta", {{"targets.json", FileMeta(targets_version, targets_text)}}}};
  ASSIGN_OR_RETURN(json snap_env, SignEnvelope(snap, {&online}));
  RETURN_IF_ERROR(WriteVersioned(dir, "snapshot", snap_env));
  const std::string snap_text = Canonical(snap_env);
  json ts = {{"_type", "timestamp"},
             {"spec_version", "1.0"},
             {"version", ts_v},
             {"expires", ExpiresIn(e.timestamp_s)},
             {"meta", {{"snapshot.json", FileMeta(snap_v, snap_text)}}}};
  ASSIGN_OR_RETURN(json ts_env, SignEnvelope(ts, {&online}));
  return WriteFileAtomic(dir + "/metadata/timestamp.json", Canonical(ts_env));
}

Status CopyFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  const std::string tmp = to + ".tmp";
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) return Unavailable(from + " -> " + to + ": " + ec.message());
  fs::rename(tmp, to, ec);
  if (ec) return Unavailable(to + ": " + ec.message());
  return Status::OK();
}

}  // namespace

Status InitHub(const std::string& dir, const SigningKey& root_key, const InitOptions& o) {
  if (FileExists(dir + "/metadata/root.json")) {
    return AlreadyExists(dir + ": already a hub (metadata/root.json exists)");
  }
  RETURN_IF_ERROR(MakeDirs(dir + "/metadata"));
  RETURN_IF_ERROR(MakeDirs(dir + "/targets"));
  RETURN_IF_ERROR(MakeDirs(dir + "/attestations"));
  RETURN_IF_ERROR(MakeDirs(dir + "/keys", 0700));
  ASSIGN_OR_RETURN(auto lock, HubLock::Take(dir));
  ASSIGN_OR_RETURN(SigningKey online, SigningKey::Generate());
  RETURN_IF_ERROR(online.WritePrivate(dir + "/keys/online.key"));
  Root root;
  root.version = 1;
  root.expires = ExpiresIn(o.expiry.root_s);
  root.Grant("root", root_key.public_key());
  root.Grant("targets", root_key.public_key());
  root.Grant("certifier", root_key.public_key());
  for (const auto& p : o.publishers) root.Grant("targets", p);
  for (const auto& c : o.certifiers) root.Grant("certifier", c);
  root.Grant("snapshot", online.public_key());
  root.Grant("timestamp", online.public_key());
  ASSIGN_OR_RETURN(json root_env, SignEnvelope(root.ToJson(), {&root_key}));
  RETURN_IF_ERROR(WriteVersioned(dir, "root", root_env));
  json targets = {{"_type", "targets"},
                  {"spec_version", "1.0"},
                  {"version", 1},
                  {"expires", ExpiresIn(o.expiry.targets_s)},
                  {"targets", json::object()}};
  ASSIGN_OR_RETURN(json targets_env, SignEnvelope(targets, {&root_key}));
  RETURN_IF_ERROR(WriteVersioned(dir, "targets", targets_env));
  return SignSnapshotAndTimestamp(dir, Canonical(targets_env), 1, o.expiry);
}

Status Publish(const std::string& dir, const PublishRequest& r, const SigningKey& publisher,
               const ExpiryOptions& e) {
  RETURN_IF_ERROR(CheckModelName(r.name));
  RETURN_IF_ERROR(CheckModelVersion(r.version));
  if (!FileExists(dir + "/metadata/root.json")) {
    return NotFound(dir + ": not a hub (no metadata/root.json; run `ronghe hub init`)");
  }
  ASSIGN_OR_RETURN(auto lock, HubLock::Take(dir));
  ASSIGN_OR_RETURN(Root root, HubRoot(dir));
  if (!root.Holds("targets", publisher.KeyId())) {
    return PermissionDenied("key " + publisher.KeyId().substr(0, 16) +
                            " may not publish on this hub (not a targets key of its root)");
  }
  ASSIGN_OR_RETURN(json targets_env, ReadJson(dir + "/metadata/targets.json"));
  json targets = targets_env["signed"];
  for (auto it = targets["targets"].begin(); it != targets["targets"].end(); ++it) {
    const json& c = it.value()["custom"];
    if (c.value("name", "") != r.name) continue;
    const std::string v = c.value("version", "");
    if (CompareVersions(v, r.version) == 0) {
      return AlreadyExists(r.name + "@" + r.version +
                           " is already published (versions are immutable)");
    }
    if (CompareVersions(v, r.version) > 0) {
      return InvalidArgument(r.name + "@" + r.version + ": versions only go up, and " + v +
                             " is published");
    }
  }
  const std::string rel = r.name + "/" + r.version;
  RETURN_IF_ERROR(MakeDirs(dir + "/targets/" + rel));
  const std::string published = ExpiresIn(0);
  auto add = [&](const std::string& file, const std::string& kind) -> Status {
    const std::string path = dir + "/targets/" + rel + "/" + file;
    ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(path));
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) return Unavailable(path + ": " + ec.message());
    targets["targets"][rel + "/" + file] = {{"length", static_cast<int64_t>(size)},
                                            {"hashes", {{"sha256", sha}}},
                                            {"custom",
                                             {{"name", r.name},
                                              {"version", r.version},
                                              {"kind", kind},
                                              {"publisher", publisher.KeyId()},
                                              {"published", published}}}};
    return Status::OK();
  };
  // The model keeps its kind of file: a LibTorch artifact (.rhm) or an edge artifact (.rhe).
  const bool edge =
      r.model_path.size() > 4 && r.model_path.compare(r.model_path.size() - 4, 4, ".rhe") == 0;
  const std::string model_file = edge ? "model.rhe" : "model.rhm";
  RETURN_IF_ERROR(CopyFile(r.model_path, dir + "/targets/" + rel + "/" + model_file));
  RETURN_IF_ERROR(add(model_file, "model"));
  RETURN_IF_ERROR(CopyFile(r.card_path, dir + "/targets/" + rel + "/card.md"));
  RETURN_IF_ERROR(add("card.md", "card"));
  RETURN_IF_ERROR(
      WriteFileAtomic(dir + "/targets/" + rel + "/provenance.json", r.provenance.dump(2) + "\n"));
  RETURN_IF_ERROR(add("provenance.json", "provenance"));
  targets["version"] = VersionOf(targets) + 1;
  targets["expires"] = ExpiresIn(e.targets_s);
  ASSIGN_OR_RETURN(json env, SignEnvelope(targets, {&publisher}));
  RETURN_IF_ERROR(WriteVersioned(dir, "targets", env));
  return SignSnapshotAndTimestamp(dir, Canonical(env), VersionOf(targets), e);
}

Status Refresh(const std::string& dir, const ExpiryOptions& e) {
  ASSIGN_OR_RETURN(auto lock, HubLock::Take(dir));
  ASSIGN_OR_RETURN(json targets_env, ReadJson(dir + "/metadata/targets.json"));
  return SignSnapshotAndTimestamp(dir, Canonical(targets_env), VersionOf(targets_env["signed"]), e);
}

Status UpdateRoot(const std::string& dir, const RootChange& change,
                  const std::vector<const SigningKey*>& keys, const ExpiryOptions& e) {
  ASSIGN_OR_RETURN(auto lock, HubLock::Take(dir));
  ASSIGN_OR_RETURN(Root old, HubRoot(dir));
  Root next = old;
  next.version = old.version + 1;
  next.expires = ExpiresIn(e.root_s);
  for (const auto& [role, key] : change.grant) next.Grant(role, key);
  for (const auto& [role, id] : change.revoke) {
    auto& ids = next.roles[role].keyids;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  }
  for (const auto& [role, t] : change.thresholds) next.roles[role].threshold = t;
  // Keys no role uses any more leave the key table.
  for (auto it = next.keys.begin(); it != next.keys.end();) {
    bool used = false;
    for (const auto& [role, rk] : next.roles) {
      used = used || std::find(rk.keyids.begin(), rk.keyids.end(), it->first) != rk.keyids.end();
    }
    it = used ? std::next(it) : next.keys.erase(it);
  }
  for (const auto& [role, rk] : next.roles) {
    if (static_cast<int>(rk.keyids.size()) < rk.threshold) {
      return InvalidArgument("root: role " + role + " would have " +
                             std::to_string(rk.keyids.size()) + " key(s) for a threshold of " +
                             std::to_string(rk.threshold));
    }
  }
  ASSIGN_OR_RETURN(json env, SignEnvelope(next.ToJson(), keys));
  const std::string what = "root version " + std::to_string(next.version);
  RETURN_IF_ERROR(VerifyRole(env, old, "root", "root", what + " (against the old root)").status());
  RETURN_IF_ERROR(VerifyRole(env, next, "root", "root", what + " (against itself)").status());
  return WriteVersioned(dir, "root", env);
}

Status StoreAttestation(const std::string& dir, const std::string& name, const std::string& version,
                        const std::string& keyid, const json& envelope) {
  RETURN_IF_ERROR(CheckModelName(name));
  RETURN_IF_ERROR(CheckModelVersion(version));
  const std::string d = dir + "/attestations/" + name + "/" + version;
  RETURN_IF_ERROR(MakeDirs(d));
  return WriteFileAtomic(d + "/" + keyid + ".json", Canonical(envelope));
}

}  // namespace ronghe::hub
