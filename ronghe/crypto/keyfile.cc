#include "ronghe/crypto/keyfile.h"

#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"
#include "ronghe/base/json.h"
#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {

namespace {

constexpr const char* kPublicFormat = "ronghe.threshold-paillier.public";
constexpr const char* kShareFormat = "ronghe.threshold-paillier.share";

nlohmann::json PublicObject(const ThresholdPublicKey& pub) {
  nlohmann::json vk = nlohmann::json::array();
  for (const auto& v : pub.verification_keys()) vk.push_back(ToHex(v));
  return {{"format", kPublicFormat},          {"version", kKeyFileVersion},
          {"bits", pub.paillier().bits()},    {"parties", pub.parties()},
          {"threshold", pub.threshold()},     {"n", ToHex(pub.paillier().n())},
          {"hs", ToHex(pub.paillier().hs())}, {"v", ToHex(pub.v())},
          {"verification_keys", vk},          {"fingerprint", pub.fingerprint()}};
}

Result<std::shared_ptr<const ThresholdPublicKey>> PublicFromObject(const nlohmann::json& j,
                                                                   const std::string& source) {
  auto bad = [&](const std::string& why) { return DataLoss(source + ": " + why); };
  try {
    if (!j.is_object()) return bad("not a JSON object");
    if (JsonString(j, "format") != kPublicFormat)
      return bad("not a ronghe threshold Paillier public key");
    if (!j.contains("version") || !j["version"].is_number_integer()) return bad("missing version");
    if (j["version"].get<int>() != kKeyFileVersion) {
      return bad("key file version " + j["version"].dump() +
                 " is not supported (this ronghe reads " + std::to_string(kKeyFileVersion) + ")");
    }
    auto hex = [&](const char* field) -> Result<mpz_class> {
      if (!j.contains(field) || !j[field].is_string())
        return bad(std::string("missing field '") + field + "'");
      auto r = FromHex(j[field].get<std::string>(), field);
      if (!r.ok()) return bad(r.status().message());
      return r;
    };
    ASSIGN_OR_RETURN(mpz_class n, hex("n"));
    ASSIGN_OR_RETURN(mpz_class hs, hex("hs"));
    ASSIGN_OR_RETURN(mpz_class v, hex("v"));
    int parties = j.at("parties").get<int>(), threshold = j.at("threshold").get<int>();
    int bits = j.at("bits").get<int>();
    std::vector<mpz_class> vk;
    const auto& arr = j.at("verification_keys");
    if (!arr.is_array()) return bad("verification_keys is not an array");
    for (size_t i = 0; i < arr.size(); ++i) {
      auto x = FromHex(arr[i].get<std::string>(), "verification_keys[" + std::to_string(i) + "]");
      if (!x.ok()) return bad(x.status().message());
      vk.push_back(*x);
    }
    auto paillier = PublicKey::Create(n, hs);
    if (!paillier.ok()) return bad(paillier.status().message());
    if ((*paillier)->bits() != bits)
      return bad("'bits' says " + std::to_string(bits) + " but n has " +
                 std::to_string((*paillier)->bits()));
    auto pub = ThresholdPublicKey::Create(*paillier, parties, threshold, v, vk);
    if (!pub.ok()) return bad(pub.status().message());
    if (JsonString(j, "fingerprint") != (*pub)->fingerprint()) {
      return bad("fingerprint does not match the key's contents (modified or corrupt file)");
    }
    return *pub;
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("malformed key file: ") + e.what());
  }
}

}  // namespace

std::string PublicKeyJson(const ThresholdPublicKey& pub) {
  return PublicObject(pub).dump(2) + "\n";
}

std::string ShareJson(const ThresholdPublicKey& pub, const KeyShare& share) {
  nlohmann::json j = {{"format", kShareFormat},
                      {"version", kKeyFileVersion},
                      {"index", share.index},
                      {"share", ToHex(share.s)},
                      {"public", PublicObject(pub)}};
  return j.dump(2) + "\n";
}

Status WriteThresholdKeys(const std::string& dir, const ThresholdKeys& keys) {
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  std::vector<std::string> paths = {dir + "/public.json"};
  for (const auto& s : keys.shares)
    paths.push_back(dir + "/party-" + std::to_string(s.index) + ".json");
  for (const auto& p : paths) {
    if (FileExists(p)) return AlreadyExists(p + ": key file exists; refusing to overwrite it");
  }
  RETURN_IF_ERROR(WriteFileAtomic(paths[0], PublicKeyJson(*keys.public_key), 0644));
  for (size_t i = 0; i < keys.shares.size(); ++i) {
    RETURN_IF_ERROR(
        WriteFileAtomic(paths[i + 1], ShareJson(*keys.public_key, keys.shares[i]), 0600));
  }
  return Status::OK();
}

Result<std::shared_ptr<const ThresholdPublicKey>> ParsePublicKey(const std::string& text,
                                                                 const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return DataLoss(source + ": not valid JSON (truncated or corrupt)");
  return PublicFromObject(j, source);
}

Result<LoadedShare> ParseShare(const std::string& text, const std::string& source) {
  auto bad = [&](const std::string& why) { return DataLoss(source + ": " + why); };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return bad("not valid JSON (truncated or corrupt)");
  if (!j.is_object() || JsonString(j, "format") != kShareFormat)
    return bad("not a ronghe key share");
  if (!j.contains("version") || !j["version"].is_number_integer() ||
      j["version"].get<int>() != kKeyFileVersion) {
    return bad("unsupported key share version");
  }
  if (!j.contains("public")) return bad("missing 'public'");
  ASSIGN_OR_RETURN(auto pub, PublicFromObject(j["public"], source + " (public part)"));
  LoadedShare out;
  out.public_key = pub;
  if (!j.contains("index") || !j["index"].is_number_integer()) return bad("missing 'index'");
  out.share.index = j["index"].get<int>();
  if (!j.contains("share") || !j["share"].is_string()) return bad("missing 'share'");
  auto s = FromHex(j["share"].get<std::string>(), "share");
  if (!s.ok()) return bad(s.status().message());
  out.share.s = *s;
  Status st = CheckShare(*pub, out.share);
  if (!st.ok()) return bad(st.message());
  return out;
}

Result<std::shared_ptr<const ThresholdPublicKey>> LoadPublicKey(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParsePublicKey(text, path);
}

Result<LoadedShare> LoadShare(const std::string& path, const ThresholdPublicKey* expected) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  ASSIGN_OR_RETURN(LoadedShare s, ParseShare(text, path));
  if (expected && expected->fingerprint() != s.public_key->fingerprint()) {
    return InvalidArgument(path + ": share belongs to key " + s.public_key->fingerprint() +
                           ", not to key " + expected->fingerprint());
  }
  return s;
}

}  // namespace ronghe::crypto
