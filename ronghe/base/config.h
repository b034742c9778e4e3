// Strict TOML configuration: typed reads that name the key and file on error, flag overrides,
// and a final check that rejects every key nobody read (a typo is an error, never ignored).
//
//   ASSIGN_OR_RETURN(Config cfg, Config::Load("examples/fraud/mlp.toml"));
//   RETURN_IF_ERROR(cfg.ApplyOverride("train.lr=0.01"));    // from --set or a dedicated flag
//   RETURN_IF_ERROR(cfg.Get("train.lr", &opts.lr));         // absent: opts.lr keeps its default
//   RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
//
// Not thread-safe; one Config per job.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe {

class Config {
 public:
  static Result<Config> Load(const std::string& path);
  // `source` names the text in errors (a path, "<flags>", ...).
  static Result<Config> Parse(const std::string& text, const std::string& source);

  Config(Config&&) noexcept;
  Config& operator=(Config&&) noexcept;
  ~Config();

  // "a.b=value": value is read as a TOML value (3, 0.1, true, "x", [1,2]) and, failing that,
  // as a bare string. Replaces what the file said.
  Status ApplyOverride(const std::string& assignment);
  // Sets a value from a typed flag.
  void Set(const std::string& key, double v);
  void Set(const std::string& key, int64_t v);
  void Set(const std::string& key, const std::string& v);

  bool Has(const std::string& key) const;
  // The keys directly inside table `table` ("" = the root), sorted; empty when absent or
  // not a table. For tables whose keys are names the user picks (serve's [aliases]).
  std::vector<std::string> Keys(const std::string& table) const;

  // Each Get leaves *out untouched when the key is absent and marks the key as known.
  // A value of the wrong type is InvalidArgument naming the source and the key.
  Status Get(const std::string& key, double* out);
  Status Get(const std::string& key, int64_t* out);
  Status Get(const std::string& key, int* out);
  Status Get(const std::string& key, bool* out);
  Status Get(const std::string& key, std::string* out);
  Status Get(const std::string& key, std::vector<int64_t>* out);
  Status Get(const std::string& key, std::vector<double>* out);
  Status Get(const std::string& key, std::vector<std::string>* out);

  // Like Get but absent is an error.
  template <typename T>
  Status GetRequired(const std::string& key, T* out) {
    if (!Has(key)) return InvalidArgument(source() + ": missing required key '" + key + "'");
    return Get(key, out);
  }

  // Marks a key (and everything below it) as known without reading it.
  void MarkKnown(const std::string& key);
  // Error naming the first key that no Get/MarkKnown touched.
  Status CheckNoUnknownKeys() const;

  // An error about `key`'s value, worded like the others ("file: key: why").
  Status ValueError(const std::string& key, const std::string& why) const;

  const std::string& source() const;
  std::string ToJson() const;
  std::string ToToml() const;

 private:
  struct Impl;
  explicit Config(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe
