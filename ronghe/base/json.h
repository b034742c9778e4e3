// Typed reads from JSON that came from outside (key files, model manifests, requests).
// nlohmann's j.value(key, default) throws when the key exists with another type, so a crafted
// file could crash the reader; these return the default instead and never throw.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ronghe {

inline std::string JsonString(const nlohmann::json& j, const char* key,
                              const std::string& dflt = "") {
  if (!j.is_object()) return dflt;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}

inline double JsonNumber(const nlohmann::json& j, const char* key, double dflt) {
  if (!j.is_object()) return dflt;
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : dflt;
}

}  // namespace ronghe
