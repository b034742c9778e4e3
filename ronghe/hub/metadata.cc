#include "ronghe/hub/metadata.h"

#include <ctime>
#include <set>

#include "ronghe/base/json.h"

namespace ronghe::hub {

using nlohmann::json;

json Root::ToJson() const {
  json keys_json = json::object(), roles_json = json::object();
  for (const auto& [id, k] : keys) keys_json[id] = k.ToJson();
  for (const auto& [name, r] : roles) {
    roles_json[name] = {{"keyids", r.keyids}, {"threshold", r.threshold}};
  }
  return {{"_type", "root"},
          {"spec_version", "1.0"},
          {"version", version},
          {"expires", expires},
          {"keys", keys_json},
          {"roles", roles_json},
          {"consistent_snapshot", true}};
}

Result<Root> Root::FromJson(const json& s) {
  Root r;
  if (!s.is_object() || s.value("_type", "") != "root" || !s.contains("version") ||
      !s["version"].is_number_integer() || !s.contains("expires") || !s["expires"].is_string() ||
      !s.contains("keys") || !s["keys"].is_object() || !s.contains("roles") ||
      !s["roles"].is_object()) {
    return InvalidArgument(
        "root metadata: missing or mistyped _type, version, expires, keys or roles");
  }
  r.version = s["version"].get<int64_t>();
  r.expires = s["expires"].get<std::string>();
  for (auto it = s["keys"].begin(); it != s["keys"].end(); ++it) {
    auto k = PublicKey::FromJson(it.value());
    if (!k.ok())
      return InvalidArgument("root metadata: key " + it.key() + ": " + k.status().message());
    if (k->KeyId() != it.key()) {
      return InvalidArgument("root metadata: key id " + it.key() + " is not its key's id");
    }
    r.keys[it.key()] = *k;
  }
  for (auto it = s["roles"].begin(); it != s["roles"].end(); ++it) {
    const json& v = it.value();
    if (!v.is_object() || !v.contains("keyids") || !v["keyids"].is_array() ||
        !v.contains("threshold") || !v["threshold"].is_number_integer() ||
        v["threshold"].get<int64_t>() < 1) {
      return InvalidArgument("root metadata: role " + it.key() +
                             " needs keyids and threshold >= 1");
    }
    RoleKeys rk;
    rk.threshold = v["threshold"].get<int>();
    for (const auto& id : v["keyids"]) {
      if (!id.is_string() || !r.keys.count(id.get<std::string>())) {
        return InvalidArgument("root metadata: role " + it.key() + " names a key not in keys");
      }
      rk.keyids.push_back(id.get<std::string>());
    }
    r.roles[it.key()] = rk;
  }
  for (const char* role : {"root", "targets", "snapshot", "timestamp"}) {
    if (!r.roles.count(role))
      return InvalidArgument(std::string("root metadata: no ") + role + " role");
  }
  return r;
}

void Root::Grant(const std::string& role, const PublicKey& key) {
  const std::string id = key.KeyId();
  keys[id] = key;
  auto& ids = roles[role].keyids;
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

bool Root::Holds(const std::string& role, const std::string& keyid) const {
  auto it = roles.find(role);
  return it != roles.end() && std::find(it->second.keyids.begin(), it->second.keyids.end(),
                                        keyid) != it->second.keyids.end();
}

std::string ExpiresIn(int64_t seconds, Clock::time_point now) {
  std::time_t t = Clock::to_time_t(now) + seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<Clock::time_point> ParseTime(const std::string& iso) {
  std::tm tm{};
  const char* end = strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (!end || *end != '\0') return InvalidArgument("'" + iso.substr(0, 40) + "' is not a UTC time");
  return Clock::from_time_t(timegm(&tm));
}

Result<json> SignEnvelope(const json& signed_part, const std::vector<const SigningKey*>& keys) {
  const std::string message = Canonical(signed_part);
  json sigs = json::array();
  std::set<std::string> seen;
  for (const SigningKey* k : keys) {
    if (!seen.insert(k->KeyId()).second) continue;
    ASSIGN_OR_RETURN(std::string sig, k->Sign(message));
    sigs.push_back({{"keyid", k->KeyId()}, {"sig", sig}});
  }
  return json{{"signed", signed_part}, {"signatures", sigs}};
}

Result<json> VerifyRole(const json& envelope, const Root& root, const std::string& role,
                        const std::string& type, const std::string& what) {
  if (!envelope.is_object() || !envelope.contains("signed") || !envelope["signed"].is_object() ||
      !envelope.contains("signatures") || !envelope["signatures"].is_array()) {
    return DataLoss(what + ": not a signed metadata envelope");
  }
  const json& s = envelope["signed"];
  if (s.value("_type", "") != type) {
    return DataLoss(what + ": is '" + s.value("_type", "") + "' metadata, expected " + type);
  }
  if (!s.contains("version") || !s["version"].is_number_integer() ||
      s["version"].get<int64_t>() < 1) {
    return DataLoss(what + ": no version");
  }
  auto r = root.roles.find(role);
  if (r == root.roles.end()) return DataLoss(what + ": the root defines no " + role + " role");
  const std::string message = Canonical(s);
  std::set<std::string> valid;
  int foreign = 0, bad = 0;
  for (const json& sig : envelope["signatures"]) {
    if (!sig.is_object() || !sig.contains("keyid") || !sig["keyid"].is_string() ||
        !sig.contains("sig") || !sig["sig"].is_string()) {
      return DataLoss(what + ": malformed signature entry");
    }
    const std::string id = sig["keyid"].get<std::string>();
    if (!root.Holds(role, id)) {
      ++foreign;  // a key the root does not (or no longer) trust for this role
      continue;
    }
    if (VerifySignature(root.keys.at(id), message, sig["sig"].get<std::string>())) {
      valid.insert(id);
    } else {
      ++bad;
    }
  }
  if (static_cast<int>(valid.size()) < r->second.threshold) {
    std::string why = what + ": " + std::to_string(valid.size()) + " valid " + role +
                      " signature(s), the threshold is " + std::to_string(r->second.threshold);
    if (bad) why += "; " + std::to_string(bad) + " signature(s) do not verify (tampered?)";
    if (foreign)
      why += "; " + std::to_string(foreign) + " by key(s) the root does not trust for " + role;
    return PermissionDenied(why);
  }
  return s;
}

Status CheckNotExpired(const json& s, Clock::time_point now, const std::string& what) {
  if (!s.contains("expires") || !s["expires"].is_string()) return DataLoss(what + ": no expiry");
  ASSIGN_OR_RETURN(Clock::time_point t, ParseTime(s["expires"].get<std::string>()));
  if (now >= t) {
    return FailedPrecondition(what + ": expired at " + s["expires"].get<std::string>() +
                              " (a frozen or stale hub; its timestamp must be re-signed)");
  }
  return Status::OK();
}

int64_t VersionOf(const json& s) { return s.value("version", int64_t{0}); }

Status CheckModelVersion(const std::string& v) {
  if (v.empty() || v.size() > 64)
    return InvalidArgument("version '" + v.substr(0, 64) + "': want 1 to 64 characters");
  bool digit = false;
  for (char c : v) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c == '.' && digit) {
      digit = false;
    } else {
      return InvalidArgument("version '" + v + "': want dotted numbers such as 1.2.0");
    }
  }
  if (!digit) return InvalidArgument("version '" + v + "': want dotted numbers such as 1.2.0");
  return Status::OK();
}

int CompareVersions(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    uint64_t x = 0, y = 0;
    while (i < a.size() && a[i] != '.') x = x * 10 + static_cast<uint64_t>(a[i++] - '0');
    while (j < b.size() && b[j] != '.') y = y * 10 + static_cast<uint64_t>(b[j++] - '0');
    if (x != y) return x < y ? -1 : 1;
    ++i;
    ++j;
  }
  return 0;
}

Status CheckModelName(const std::string& n) {
  bool ok = !n.empty() && n.size() <= 100 &&
            ((n[0] >= 'a' && n[0] <= 'z') || (n[0] >= '0' && n[0] <= '9'));
  for (char c : n) {
    ok = ok &&
         ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-');
  }
  if (!ok || n.find("..") != std::string::npos) {
    return InvalidArgument("model name '" + n.substr(0, 100) +
                           "': want lowercase letters, digits, '.', '_' and '-', starting with a "
                           "letter or digit");
  }
  return Status::OK();
}

}  // namespace ronghe::hub
