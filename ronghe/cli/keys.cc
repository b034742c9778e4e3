// `ronghe keys init|inspect` (threshold Paillier key files) and `ronghe crypto speed`.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ronghe/base/file.h"
#include "ronghe/cli/command.h"
#include "ronghe/crypto/keyfile.h"
#include "ronghe/crypto/speed.h"

namespace ronghe::cli {

namespace {

int CmdKeysInit(int parties, int threshold, int bits, const std::string& out) {
  crypto::DealerOptions d;
  d.bits = bits;
  d.parties = parties;
  d.threshold = threshold;
  if (threshold > parties) {
    return Fail(InvalidArgument("--threshold (" + std::to_string(threshold) +
                                ") exceeds --parties (" + std::to_string(parties) + ")"));
  }
  for (int i = 0; i <= parties; ++i) {
    std::string p = out + (i == 0 ? "/public.json" : "/party-" + std::to_string(i) + ".json");
    if (FileExists(p))
      return Fail(AlreadyExists(p + ": key file exists; refusing to overwrite it"));
  }
  spdlog::info(
      "dealing a {}-of-{} threshold Paillier key, {} bits (safe primes; this takes a while)",
      threshold, parties, bits);
  auto keys = crypto::DealThresholdKeys(d);
  if (!keys.ok()) return Fail(keys.status());
  Status st = crypto::WriteThresholdKeys(out, *keys);
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s/public.json and party-1..%d.json (0600)\nfingerprint %s\n", out.c_str(),
              parties, keys->public_key->fingerprint().c_str());
  return 0;
}

int CmdKeysInspect(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return Fail(text.status());
  auto j = nlohmann::json::parse(*text, nullptr, false);
  bool is_share = !j.is_discarded() && j.is_object() &&
                  j.value("format", "").find(".share") != std::string::npos;
  std::shared_ptr<const crypto::ThresholdPublicKey> pub;
  int index = 0;
  if (is_share) {
    auto s = crypto::ParseShare(*text, path);
    if (!s.ok()) return Fail(s.status());
    pub = s->public_key;
    index = s->share.index;
  } else {
    auto p = crypto::ParsePublicKey(*text, path);
    if (!p.ok()) return Fail(p.status());
    pub = *p;
  }
  std::printf("file:        %s\n", path.c_str());
  std::printf("kind:        %s\n", is_share ? "threshold Paillier key share (secret; not shown)"
                                            : "threshold Paillier public key");
  if (is_share) std::printf("party:       %d\n", index);
  std::printf("bits:        %d\nparties:     %d\nthreshold:   %d\nfingerprint: %s\n",
              pub->paillier().bits(), pub->parties(), pub->threshold(), pub->fingerprint().c_str());
  return 0;
}

int CmdCryptoSpeed(int bits, bool as_json, double seconds, bool keygen) {
  crypto::SpeedOptions o;
  if (bits) o.bits = {bits};
  o.seconds = seconds;
  o.keygen = keygen;
  if (!as_json) {
    std::printf("%-16s %5s %7s %14s %14s\n", "op", "bits", "threads", "ops/s", "us/op");
    o.on_result = [](const crypto::SpeedResult& r) {
      std::printf("%-16s %5d %7d %14.1f %14.1f\n", r.op.c_str(), r.bits, r.threads, r.ops_per_s,
                  1e6 / r.ops_per_s);
      std::fflush(stdout);
    };
  }
  auto r = crypto::RunSpeed(o);
  if (!r.ok()) return Fail(r.status());
  if (as_json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& x : *r)
      out.push_back(
          {{"op", x.op}, {"bits", x.bits}, {"threads", x.threads}, {"ops_per_s", x.ops_per_s}});
    std::printf("%s\n", out.dump(2).c_str());
  }
  return 0;
}

}  // namespace

void AddKeysCommands(CLI::App& root, CommandContext& ctx) {
  auto* keys = root.add_subcommand("keys", "Threshold Paillier keys: init, inspect");
  keys->require_subcommand(1);
  struct InitFlags {
    int parties = 5, threshold = 3, bits = 2048;
    std::string out;
  };
  auto* init = keys->add_subcommand("init", "Run the dealer key ceremony and write key files");
  auto k = Flags<InitFlags>();
  init->add_option("--parties", k->parties, "Number of parties (default 5)")
      ->check(CLI::Range(1, 64));
  init->add_option("--threshold", k->threshold, "Parties needed to decrypt (default 3)")
      ->check(CLI::Range(1, 64));
  init->add_option("--bits", k->bits, "Modulus size: 2048 (default) or 3072")
      ->check(CLI::IsMember({2048, 3072}));
  init->add_option("--out", k->out, "Folder for public.json and party-<i>.json")->required();
  ctx.On(init,
         [k](const Globals&) { return CmdKeysInit(k->parties, k->threshold, k->bits, k->out); });
  auto* inspect =
      keys->add_subcommand("inspect", "Print a key file's public facts (never a secret)");
  auto file = Flags<std::string>();
  inspect->add_option("FILE", *file, "public.json or party-<i>.json")
      ->required()
      ->check(CLI::ExistingFile);
  ctx.On(inspect, [file](const Globals&) { return CmdKeysInspect(*file); });

  auto* crypto_cmd = root.add_subcommand("crypto", "Cryptography tools");
  crypto_cmd->require_subcommand(1);
  struct SpeedFlags {
    int bits = 0;
    bool json = false, no_keygen = false;
    double seconds = 1.0;
  };
  auto* speed =
      crypto_cmd->add_subcommand("speed", "Operations per second on one and on all cores");
  auto s = Flags<SpeedFlags>();
  speed->add_option("--bits", s->bits, "2048 or 3072 (default: both)")
      ->check(CLI::IsMember({2048, 3072}));
  speed->add_flag("--json", s->json, "Print a JSON list of {op, bits, threads, ops_per_s}");
  speed->add_option("--seconds", s->seconds, "Minimum time per figure (default 1)")
      ->check(CLI::Range(0.01, 60.0));
  speed->add_flag("--no-keygen", s->no_keygen, "Skip timing the key ceremony");
  ctx.On(speed, [s](const Globals&) {
    return CmdCryptoSpeed(s->bits, s->json, s->seconds, !s->no_keygen);
  });
}

}  // namespace ronghe::cli
