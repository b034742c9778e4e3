#include "ronghe/hub/client.h"

#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"

namespace ronghe::hub {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Metadata files are small; a bigger one is an endless-data attack, refused before it is read.
constexpr int64_t kMaxRootBytes = 1 << 20;
constexpr int64_t kMaxTimestampBytes = 64 << 10;

class DirSource final : public HubSource {
 public:
  explicit DirSource(std::string dir) : dir_(std::move(dir)) {}
  Result<std::string> Fetch(const std::string& rel, int64_t max_bytes) override {
    if (!PlainRelativePath(rel))
      return InvalidArgument("'" + rel.substr(0, 200) + "': not a path inside the hub");
    const std::string path = dir_ + "/" + rel;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return NotFound(path + ": no such file");
    const auto size = fs::file_size(path, ec);
    if (ec) return Unavailable(path + ": " + ec.message());
    if (static_cast<int64_t>(size) > max_bytes) {
      return DataLoss(path + ": " + std::to_string(size) + " bytes, more than the " +
                      std::to_string(max_bytes) + " expected");
    }
    return ReadFile(path);
  }
  Status FetchTo(const std::string& rel, int64_t max_bytes, const std::string& out,
                 Sha256Hasher* hash) override {
    if (!PlainRelativePath(rel))
      return InvalidArgument("'" + rel.substr(0, 200) + "': not a path inside the hub");
    const std::string path = dir_ + "/" + rel;
    std::ifstream in(path, std::ios::binary);
    if (!in) return NotFound(path + ": no such file");
    std::ofstream o(out, std::ios::binary | std::ios::trunc);
    if (!o) return Unavailable(out + ": cannot write");
    std::vector<char> buf(1 << 20);
    int64_t total = 0;
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      total += n;
      if (total > max_bytes) {
        return DataLoss(path + ": longer than the " + std::to_string(max_bytes) +
                        " bytes its metadata gives");
      }
      hash->Update(buf.data(), static_cast<size_t>(n));
      o.write(buf.data(), n);
    }
    o.close();
    if (!o) return Unavailable(out + ": write failed");
    return Status::OK();
  }
  std::string Describe() const override { return dir_; }

 private:
  std::string dir_;
};

// A `ronghe hub serve` over HTTP(S). Sizes are enforced while receiving: a server that sends more
// than the signed length is cut off, not buffered.
class HttpSource final : public HubSource {
 public:
  HttpSource(std::string url, const std::string& ca_file) : url_(std::move(url)) {
    client_ = std::make_unique<httplib::Client>(url_);
    client_->set_connection_timeout(10, 0);
    client_->set_read_timeout(60, 0);
    client_->set_follow_location(false);
    if (url_.rfind("https://", 0) == 0) {
      client_->enable_server_certificate_verification(true);
      if (!ca_file.empty()) client_->set_ca_cert_path(ca_file.c_str());
    }
  }
  Result<std::string> Fetch(const std::string& rel, int64_t max_bytes) override {
    std::string body;
    RETURN_IF_ERROR(Stream(rel, max_bytes, [&](const char* data, size_t n) {
      body.append(data, n);
      return true;
    }));
    return body;
  }
  Status FetchTo(const std::string& rel, int64_t max_bytes, const std::string& out,
                 Sha256Hasher* hash) override {
    std::ofstream o(out, std::ios::binary | std::ios::trunc);
    if (!o) return Unavailable(out + ": cannot write");
    Status st = Stream(rel, max_bytes, [&](const char* data, size_t n) {
      hash->Update(data, n);
      o.write(data, static_cast<std::streamsize>(n));
      return static_cast<bool>(o);
    });
    o.close();
    if (st.ok() && !o) return Unavailable(out + ": write failed");
    return st;
  }
  std::string Describe() const override { return url_; }

 private:
  // GET /rel, handing a 200's body to `sink` piece by piece and cutting it off past max_bytes.
  Status Stream(const std::string& rel, int64_t max_bytes,
                const std::function<bool(const char*, size_t)>& sink) {
    int64_t total = 0;
    bool too_long = false;
    int status = 0;
    auto r = client_->Get(("/" + rel).c_str(),
                          [&](const httplib::Response& res) {
                            status = res.status;
                            return true;
                          },
                          [&](const char* data, size_t n) {
                            if (status != 200) return true;
                            total += static_cast<int64_t>(n);
                            if (total > max_bytes) {
                              too_long = true;
                              return false;
                            }
                            return sink(data, n);
                          });
    const std::string what = url_ + "/" + rel;
    if (too_long) {
      return DataLoss(what + ": longer than the " + std::to_string(max_bytes) + " bytes expected");
    }
    if (!r) return Unavailable(what + ": " + httplib::to_string(r.error()));
    if (status == 404) return NotFound(what + ": not on the hub");
    if (status != 200) return Unavailable(what + ": HTTP " + std::to_string(status));
    return Status::OK();
  }
  std::string url_;
  std::unique_ptr<httplib::Client> client_;
};

Result<json> ParseEnvelope(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(what + ": not valid JSON");
  return j;
}

// The length and sha256 that `meta` (a snapshot or timestamp entry) gives for `text`.
Status CheckAgainstMeta(const std::string& text, const json& meta, const std::string& what) {
  if (meta.contains("length") &&
      meta["length"].get<int64_t>() != static_cast<int64_t>(text.size())) {
    return DataLoss(what + ": " + std::to_string(text.size()) + " bytes, the level above says " +
                    std::to_string(meta["length"].get<int64_t>()) +
                    " (tampered, or mixed from another snapshot)");
  }
  if (meta.contains("hashes")) {
    const std::string want = meta["hashes"].value("sha256", "");
    if (Sha256Hex(text) != want) {
      return DataLoss(what +
                      ": sha256 differs from the one the level above signed (tampered, or "
                      "mixed from another snapshot)");
    }
  }
  return Status::OK();
}

}  // namespace

bool PlainRelativePath(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.find('\\') != std::string::npos) return false;
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t next = p.find('/', pos);
    if (next == std::string::npos) next = p.size();
    const std::string seg = p.substr(pos, next - pos);
    if (seg.empty() || seg == "." || seg == "..") return false;
    pos = next + 1;
  }
  return true;
}

Result<std::unique_ptr<HubSource>> OpenHubSource(const std::string& hub,
                                                 const std::string& ca_file) {
  if (hub.rfind("http://", 0) == 0 || hub.rfind("https://", 0) == 0) {
    std::string url = hub;
    while (!url.empty() && url.back() == '/') url.pop_back();
    return std::unique_ptr<HubSource>(new HttpSource(url, ca_file));
  }
  std::error_code ec;
  if (!fs::is_directory(hub, ec)) return NotFound("--hub " + hub + ": no such directory");
  return std::unique_ptr<HubSource>(new DirSource(fs::absolute(hub).lexically_normal().string()));
}

std::string TrustDirFor(const std::string& home, const std::string& hub) {
  std::string key = hub;
  std::error_code ec;
  if (hub.find("://") == std::string::npos) key = fs::absolute(hub, ec).lexically_normal().string();
  return home + "/hub-trust/" + Sha256Hex(key).substr(0, 16);
}

const ModelFile* ModelVersion::File(const std::string& kind) const {
  for (const auto& f : files) {
    if (f.kind == kind) return &f;
  }
  return nullptr;
}

Result<std::unique_ptr<HubClient>> HubClient::Open(const ClientOptions& o) {
  if (o.trust_dir.empty()) return InvalidArgument("hub client: no trust directory");
  std::unique_ptr<HubClient> c(new HubClient());
  c->options_ = o;
  ASSIGN_OR_RETURN(c->source_, OpenHubSource(o.hub, o.ca_file));
  RETURN_IF_ERROR(MakeDirs(o.trust_dir, 0700));
  RETURN_IF_ERROR(c->LoadTrusted());
  return c;
}

Status HubClient::Save(const std::string& role, const json& envelope) {
  return WriteFileAtomic(options_.trust_dir + "/" + role + ".json", Canonical(envelope), 0600);
}

Status HubClient::LoadTrusted() {
  const std::string dir = options_.trust_dir;
  json root_env;
  if (FileExists(dir + "/root.json")) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(dir + "/root.json"));
    ASSIGN_OR_RETURN(root_env, ParseEnvelope(text, dir + "/root.json"));
  } else {
    std::string text;
    std::string what;
    if (!options_.trusted_root.empty()) {
      what = options_.trusted_root;
      ASSIGN_OR_RETURN(text, ReadFile(options_.trusted_root));
    } else {
      what = source_->Describe() + "/metadata/1.root.json";
      ASSIGN_OR_RETURN(text, source_->Fetch("metadata/1.root.json", kMaxRootBytes));
    }
    ASSIGN_OR_RETURN(root_env, ParseEnvelope(text, what));
    if (!root_env.contains("signed")) return DataLoss(what + ": not an envelope");
    ASSIGN_OR_RETURN(Root first, Root::FromJson(root_env["signed"]));
    // The first root vouches for itself: a threshold of its own root keys.
    RETURN_IF_ERROR(VerifyRole(root_env, first, "root", "root", what).status());
    RETURN_IF_ERROR(Save("root", root_env));
  }
  ASSIGN_OR_RETURN(root_, Root::FromJson(root_env["signed"]));
  for (const char* role : {"timestamp", "snapshot", "targets"}) {
    const std::string path = dir + "/" + role + ".json";
    if (!FileExists(path)) continue;
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    ASSIGN_OR_RETURN(json env, ParseEnvelope(text, path));
    json& slot = std::string(role) == "timestamp"  ? trusted_timestamp_
                 : std::string(role) == "snapshot" ? trusted_snapshot_
                                                   : trusted_targets_;
    slot = env["signed"];
    if (std::string(role) == "targets") targets_envelope_ = env;
  }
  if (trusted_targets_.is_object()) targets_ = trusted_targets_;
  return Status::OK();
}

Status HubClient::UpdateRoot() {
  while (true) {
    const int64_t next = root_.version + 1;
    const std::string rel = "metadata/" + std::to_string(next) + ".root.json";
    auto text = source_->Fetch(rel, kMaxRootBytes);
    if (!text.ok()) {
      if (text.status().code() == StatusCode::kNotFound) break;
      return text.status();
    }
    const std::string what = source_->Describe() + "/" + rel;
    ASSIGN_OR_RETURN(json env, ParseEnvelope(*text, what));
    // Signed by a threshold of the trusted root's keys, and of its own.
    RETURN_IF_ERROR(VerifyRole(env, root_, "root", "root", what).status());
    ASSIGN_OR_RETURN(Root candidate, Root::FromJson(env["signed"]));
    RETURN_IF_ERROR(VerifyRole(env, candidate, "root", "root", what).status());
    if (candidate.version != next) {
      return DataLoss(what + ": carries version " + std::to_string(candidate.version));
    }
    // New timestamp or snapshot keys: what was trusted under the old ones is dropped (TUF's
    // recovery from a compromised online key).
    auto keys_of = [](const Root& r, const char* role) { return r.roles.at(role).keyids; };
    if (keys_of(candidate, "timestamp") != keys_of(root_, "timestamp")) {
      trusted_timestamp_ = json();
      std::error_code ec;
      fs::remove(options_.trust_dir + "/timestamp.json", ec);
    }
    if (keys_of(candidate, "snapshot") != keys_of(root_, "snapshot")) {
      trusted_snapshot_ = json();
      std::error_code ec;
      fs::remove(options_.trust_dir + "/snapshot.json", ec);
    }
    root_ = std::move(candidate);
    RETURN_IF_ERROR(Save("root", env));
  }
  return CheckNotExpired(root_.ToJson(), options_.now,
                         "root (version " + std::to_string(root_.version) + ")");
}

Status HubClient::Update() {
  RETURN_IF_ERROR(UpdateRoot());
  const std::string base = source_->Describe() + "/metadata/";

  // Timestamp.
  ASSIGN_OR_RETURN(std::string ts_text,
                   source_->Fetch("metadata/timestamp.json", kMaxTimestampBytes));
  ASSIGN_OR_RETURN(json ts_env, ParseEnvelope(ts_text, base + "timestamp.json"));
  ASSIGN_OR_RETURN(json ts,
                   VerifyRole(ts_env, root_, "timestamp", "timestamp", base + "timestamp.json"));
  if (trusted_timestamp_.is_object() && VersionOf(ts) < VersionOf(trusted_timestamp_)) {
    return FailedPrecondition(base + "timestamp.json: version " + std::to_string(VersionOf(ts)) +
                              " is older than the trusted version " +
                              std::to_string(VersionOf(trusted_timestamp_)) + " (rollback)");
  }
  RETURN_IF_ERROR(CheckNotExpired(ts, options_.now, base + "timestamp.json"));
  if (!ts.contains("meta") || !ts["meta"].contains("snapshot.json")) {
    return DataLoss(base + "timestamp.json: names no snapshot");
  }
  const json snap_meta = ts["meta"]["snapshot.json"];
  const int64_t snap_v = snap_meta.value("version", int64_t{0});
  if (trusted_snapshot_.is_object() && snap_v < VersionOf(trusted_snapshot_)) {
    return FailedPrecondition(base + "timestamp.json: names snapshot version " +
                              std::to_string(snap_v) + ", older than the trusted " +
                              std::to_string(VersionOf(trusted_snapshot_)) + " (rollback)");
  }

  // Snapshot: exactly the one the timestamp names.
  const std::string snap_name = std::to_string(snap_v) + ".snapshot.json";
  ASSIGN_OR_RETURN(std::string snap_text, source_->Fetch("metadata/" + snap_name,
                                                         snap_meta.value("length", kMaxRootBytes)));
  RETURN_IF_ERROR(CheckAgainstMeta(snap_text, snap_meta, base + snap_name));
  ASSIGN_OR_RETURN(json snap_env, ParseEnvelope(snap_text, base + snap_name));
  ASSIGN_OR_RETURN(json snap,
                   VerifyRole(snap_env, root_, "snapshot", "snapshot", base + snap_name));
  if (VersionOf(snap) != snap_v) {
    return DataLoss(base + snap_name + ": carries version " + std::to_string(VersionOf(snap)));
  }
  RETURN_IF_ERROR(CheckNotExpired(snap, options_.now, base + snap_name));
  if (!snap.contains("meta") || !snap["meta"].contains("targets.json")) {
    return DataLoss(base + snap_name + ": names no targets metadata");
  }
  const json targets_meta = snap["meta"]["targets.json"];
  const int64_t targets_v = targets_meta.value("version", int64_t{0});
  if (trusted_targets_.is_object() && targets_v < VersionOf(trusted_targets_)) {
    return FailedPrecondition(base + snap_name + ": names targets version " +
                              std::to_string(targets_v) + ", older than the trusted " +
                              std::to_string(VersionOf(trusted_targets_)) + " (rollback)");
  }

  // Targets: exactly the one the snapshot names.
  const std::string targets_name = std::to_string(targets_v) + ".targets.json";
  ASSIGN_OR_RETURN(
      std::string targets_text,
      source_->Fetch("metadata/" + targets_name, targets_meta.value("length", int64_t{64} << 20)));
  RETURN_IF_ERROR(CheckAgainstMeta(targets_text, targets_meta, base + targets_name));
  ASSIGN_OR_RETURN(json targets_env, ParseEnvelope(targets_text, base + targets_name));
  ASSIGN_OR_RETURN(json targets,
                   VerifyRole(targets_env, root_, "targets", "targets", base + targets_name));
  if (VersionOf(targets) != targets_v) {
    return DataLoss(base + targets_name + ": carries version " +
                    std::to_string(VersionOf(targets)));
  }
  RETURN_IF_ERROR(CheckNotExpired(targets, options_.now, base + targets_name));
  if (!targets.contains("targets") || !targets["targets"].is_object()) {
    return DataLoss(base + targets_name + ": no targets");
  }
  // Even a trusted publisher names only NAME/VERSION/FILE, for the name and version it states.
  for (auto it = targets["targets"].begin(); it != targets["targets"].end(); ++it) {
    const json& t = it.value();
    const json c = t.is_object() ? t.value("custom", json::object()) : json::object();
    const std::string want = c.value("name", "") + "/" + c.value("version", "") + "/";
    if (!PlainRelativePath(it.key()) || it.key().rfind(want, 0) != 0 ||
        it.key().find('/', want.size()) != std::string::npos || !t.contains("length") ||
        !t["length"].is_number_integer() || !t.contains("hashes") || !t["hashes"].is_object()) {
      return DataLoss(base + targets_name + ": target '" + it.key().substr(0, 200) +
                      "' is not NAME/VERSION/FILE of its stated name and version, with length and "
                      "hashes");
    }
  }

  RETURN_IF_ERROR(Save("timestamp", ts_env));
  RETURN_IF_ERROR(Save("snapshot", snap_env));
  RETURN_IF_ERROR(Save("targets", targets_env));
  trusted_timestamp_ = ts;
  trusted_snapshot_ = snap;
  trusted_targets_ = targets;
  targets_ = targets;
  targets_envelope_ = targets_env;
  return Status::OK();
}

Result<std::vector<json>> HubClient::RootChain() {
  std::vector<json> chain;
  for (int64_t v = 1; v <= root_.version; ++v) {
    const std::string rel = "metadata/" + std::to_string(v) + ".root.json";
    ASSIGN_OR_RETURN(std::string text, source_->Fetch(rel, kMaxRootBytes));
    ASSIGN_OR_RETURN(json env, ParseEnvelope(text, source_->Describe() + "/" + rel));
    chain.push_back(std::move(env));
  }
  // The last link is the root this client trusts, whatever the source now says.
  ASSIGN_OR_RETURN(std::string trusted, ReadFile(options_.trust_dir + "/root.json"));
  ASSIGN_OR_RETURN(chain.back(), ParseEnvelope(trusted, options_.trust_dir + "/root.json"));
  return chain;
}

std::vector<ModelVersion> HubClient::Models() const {
  std::map<std::pair<std::string, std::string>, ModelVersion> by;
  if (!targets_.is_object() || !targets_.contains("targets")) return {};
  for (auto it = targets_["targets"].begin(); it != targets_["targets"].end(); ++it) {
    const json& t = it.value();
    const json c = t.value("custom", json::object());
    ModelVersion& m = by[{c.value("name", ""), c.value("version", "")}];
    m.name = c.value("name", "");
    m.version = c.value("version", "");
    m.publisher = c.value("publisher", "");
    m.published = c.value("published", "");
    ModelFile f;
    f.path = it.key();
    f.length = t.value("length", int64_t{0});
    f.sha256 = t.contains("hashes") ? t["hashes"].value("sha256", "") : "";
    f.kind = c.value("kind", "");
    m.files.push_back(f);
  }
  std::vector<ModelVersion> out;
  for (auto& [k, m] : by) out.push_back(std::move(m));
  std::sort(out.begin(), out.end(), [](const ModelVersion& a, const ModelVersion& b) {
    return a.name != b.name ? a.name < b.name : CompareVersions(a.version, b.version) < 0;
  });
  return out;
}

Result<ModelVersion> HubClient::Find(const std::string& name, const std::string& version) const {
  const ModelVersion* best = nullptr;
  std::vector<ModelVersion> all = Models();
  std::string versions;
  for (const auto& m : all) {
    if (m.name != name) continue;
    versions += (versions.empty() ? "" : ", ") + m.version;
    if (!version.empty()) {
      if (CompareVersions(m.version, version) == 0) best = &m;
    } else if (!best || CompareVersions(m.version, best->version) > 0) {
      best = &m;
    }
  }
  if (!best) {
    if (versions.empty()) return NotFound("no model '" + name + "' on the hub");
    return NotFound("no version " + version + " of '" + name + "' (published: " + versions + ")");
  }
  return *best;
}

Status HubClient::Download(const ModelFile& f, const std::string& out) const {
  const std::string tmp = out + ".part";
  Sha256Hasher hasher;
  RETURN_IF_ERROR(source_->FetchTo("targets/" + f.path, f.length, tmp, &hasher));
  std::error_code ec;
  const auto size = fs::file_size(tmp, ec);
  const std::string what = source_->Describe() + "/targets/" + f.path;
  if (ec || static_cast<int64_t>(size) != f.length) {
    fs::remove(tmp, ec);
    return DataLoss(what + ": " + std::to_string(size) + " bytes, the signed targets say " +
                    std::to_string(f.length));
  }
  const std::string sha = hasher.FinalHex();
  if (sha != f.sha256) {
    fs::remove(tmp, ec);
    return DataLoss(what + ": sha256 " + sha.substr(0, 16) + "... differs from the signed " +
                    f.sha256.substr(0, 16) + "... (tampered)");
  }
  fs::rename(tmp, out, ec);
  if (ec) return Unavailable(out + ": " + ec.message());
  return Status::OK();
}

Result<std::string> HubClient::Read(const ModelFile& f) const {
  ASSIGN_OR_RETURN(std::string bytes, source_->Fetch("targets/" + f.path, f.length));
  const std::string what = source_->Describe() + "/targets/" + f.path;
  if (static_cast<int64_t>(bytes.size()) != f.length || Sha256Hex(bytes) != f.sha256) {
    return DataLoss(what + ": differs from its signed length and sha256 (tampered)");
  }
  return bytes;
}

}  // namespace ronghe::hub
