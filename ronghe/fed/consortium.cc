#include "ronghe/fed/consortium.h"

#include <arpa/inet.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "ronghe/base/file.h"
#include "ronghe/crypto/keyfile.h"
#include "ronghe/crypto/threshold.h"
#include "ronghe/tls/x509.h"

namespace ronghe::fed {

namespace {
bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}
}  // namespace

Status ParseConsortiumOptions(Config& cfg, ConsortiumOptions* o) {
  RETURN_IF_ERROR(cfg.GetRequired("consortium.id", &o->id));
  RETURN_IF_ERROR(cfg.GetRequired("consortium.parties", &o->parties));
  RETURN_IF_ERROR(cfg.Get("consortium.threshold", &o->threshold));
  RETURN_IF_ERROR(cfg.Get("consortium.key_bits", &o->key_bits));
  RETURN_IF_ERROR(cfg.Get("coordinator.address", &o->coordinator_address));
  RETURN_IF_ERROR(cfg.Get("coordinator.hosts", &o->coordinator_hosts));
  if (o->parties.empty()) return cfg.ValueError("consortium.parties", "needs at least one party");
  if (o->parties.size() > 64) return cfg.ValueError("consortium.parties", "at most 64 parties");
  std::set<std::string> seen;
  for (const auto& p : o->parties) {
    if (!seen.insert(p).second)
      return cfg.ValueError("consortium.parties", "party '" + p + "' appears twice");
    if (p == "coordinator" || p == "ca")
      return cfg.ValueError("consortium.parties", "'" + p + "' is reserved");
  }
  if (o->threshold < 1 || o->threshold > static_cast<int>(o->parties.size())) {
    return cfg.ValueError("consortium.threshold", "must be between 1 and the number of parties (" +
                                                      std::to_string(o->parties.size()) + ")");
  }
  if (o->key_bits != 2048 && o->key_bits != 3072)
    return cfg.ValueError("consortium.key_bits", "must be 2048 or 3072");
  if (o->coordinator_address.rfind(':') == std::string::npos) {
    return cfg.ValueError("coordinator.address", "expected host:port");
  }
  if (o->coordinator_hosts.empty())
    return cfg.ValueError("coordinator.hosts", "needs at least one host name or IP");
  Schema& s = o->schema;
  RETURN_IF_ERROR(cfg.Get("schema.input_shape", &s.input_shape));
  RETURN_IF_ERROR(cfg.Get("schema.outputs", &s.outputs));
  RETURN_IF_ERROR(cfg.Get("schema.task", &s.task));
  if (!s.input_shape.empty() || s.outputs != 0 || !s.task.empty()) {
    if (s.input_shape.empty() ||
        std::any_of(s.input_shape.begin(), s.input_shape.end(), [](int64_t d) { return d < 1; }))
      return cfg.ValueError("schema.input_shape", "needs one or more dimensions, each >= 1");
    if (s.outputs < 1) return cfg.ValueError("schema.outputs", "must be >= 1");
    if (s.task != "binary" && s.task != "multiclass" && s.task != "regression")
      return cfg.ValueError("schema.task", "must be \"binary\", \"multiclass\" or \"regression\"");
    if (s.task == "binary" && s.outputs != 1)
      return cfg.ValueError("schema.outputs", "a binary task has 1 output");
  }
  return Status::OK();
}

std::string Schema::ToString() const {
  std::string shape;
  for (int64_t d : input_shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  return "input_shape [" + shape + "], outputs " + std::to_string(outputs) + ", task " +
         (task.empty() ? "(none)" : task);
}

Status InitConsortium(const ConsortiumOptions& o, const std::string& config_text,
                      const std::string& out) {
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && !std::filesystem::is_empty(out, ec)) {
    return AlreadyExists(out + ": exists and is not empty; refusing to overwrite a consortium");
  }
  ASSIGN_OR_RETURN(tls::PemPair ca, tls::MakeCa(o.id));
  tls::CertificateRequest coord{o.id, "coordinator", {}, {}, true};
  for (const auto& h : o.coordinator_hosts) (IsIp(h) ? coord.ips : coord.dns).push_back(h);
  ASSIGN_OR_RETURN(tls::PemPair coord_pem, tls::MakeLeaf(ca, coord));
  std::vector<tls::PemPair> party_pem;
  for (const auto& p : o.parties) {
    ASSIGN_OR_RETURN(tls::PemPair pp, tls::MakeLeaf(ca, tls::CertificateRequest{o.id, p}));
    party_pem.push_back(std::move(pp));
  }
  crypto::DealerOptions d;
  d.bits = o.key_bits;
  d.parties = static_cast<int>(o.parties.size());
  d.threshold = o.threshold;
  ASSIGN_OR_RETURN(crypto::ThresholdKeys keys, crypto::DealThresholdKeys(d));
  const std::string pub_json = crypto::PublicKeyJson(*keys.public_key);

  RETURN_IF_ERROR(MakeDirs(out, 0700));
  RETURN_IF_ERROR(MakeDirs(out + "/ca", 0700));
  RETURN_IF_ERROR(WriteFileAtomic(out + "/ca/ca.pem", ca.cert_pem, 0644));
  RETURN_IF_ERROR(WriteFileAtomic(out + "/ca/ca-key.pem", ca.key_pem, 0600));
  auto bundle = [&](const std::string& name, const tls::PemPair& pem,
                    const nlohmann::json& identity) -> Status {
    std::string dir = out + "/" + name;
    RETURN_IF_ERROR(MakeDirs(dir, 0700));
    RETURN_IF_ERROR(WriteFileAtomic(dir + "/ca.pem", ca.cert_pem, 0644));
    RETURN_IF_ERROR(WriteFileAtomic(dir + "/cert.pem", pem.cert_pem, 0644));
    RETURN_IF_ERROR(WriteFileAtomic(dir + "/key.pem", pem.key_pem, 0600));
    RETURN_IF_ERROR(WriteFileAtomic(dir + "/public.json", pub_json, 0644));
    RETURN_IF_ERROR(WriteFileAtomic(dir + "/identity.json", identity.dump(2) + "\n", 0644));
    return WriteFileAtomic(dir + "/consortium.toml", config_text, 0644);
  };
  RETURN_IF_ERROR(bundle("coordinator", coord_pem,
                         {{"consortium", o.id},
                          {"role", "coordinator"},
                          {"name", "coordinator"},
                          {"address", o.coordinator_address},
                          {"key_fingerprint", keys.public_key->fingerprint()}}));
  for (size_t i = 0; i < o.parties.size(); ++i) {
    const std::string& name = o.parties[i];
    RETURN_IF_ERROR(bundle(name, party_pem[i],
                           {{"consortium", o.id},
                            {"role", "participant"},
                            {"name", name},
                            {"index", static_cast<int>(i) + 1},
                            {"coordinator", o.coordinator_address},
                            {"key_fingerprint", keys.public_key->fingerprint()}}));
    RETURN_IF_ERROR(WriteFileAtomic(out + "/" + name + "/share.json",
                                    crypto::ShareJson(*keys.public_key, keys.shares[i]), 0600));
  }
  return Status::OK();
}

}  // namespace ronghe::fed
