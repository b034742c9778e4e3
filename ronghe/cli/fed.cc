// `ronghe fed init|coordinator|participant|demo|bench`: a federated-learning consortium.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/fed_demo.h"
#include "ronghe/fed/bench.h"
#include "ronghe/fed/consortium.h"
#include "ronghe/fed/job.h"

#ifndef RONGHE_SOURCE_DIR
#define RONGHE_SOURCE_DIR "."
#endif

namespace ronghe::cli {

namespace {

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

int RunCoordinator(fed::CoordinatorJobRequest& req, const Globals& g) {
  req.home = g.home;
  auto r = fed::RunCoordinatorJob(req);
  if (!r.ok()) return Fail(r.status());
  if (r->stopped) {
    std::printf("run %lld: stopped by signal after round %lld; the next start resumes it\n",
                static_cast<long long>(r->run_id), static_cast<long long>(r->rounds_completed));
    return 0;
  }
  std::printf("run %lld: %lld rounds%s; model %s\n", static_cast<long long>(r->run_id),
              static_cast<long long>(r->rounds_completed), r->resumed ? " (resumed)" : "",
              r->artifact.c_str());
  if (r->epsilon > 0) std::printf("differential privacy spent: epsilon %.3f\n", r->epsilon);
  return 0;
}

struct BenchFlags {
  fed::BenchOptions options;
  std::string schemes = "none,paillier-masked";
  bool json = false;
  bool no_round = false;
};

int CmdFedBench(BenchFlags& f) {
  f.options.schemes.clear();
  std::string rest = f.schemes;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string name = rest.substr(0, comma);
    if (!name.empty()) f.options.schemes.push_back(name);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
  }
  f.options.whole_round = !f.no_round;
  auto rows = fed::RunFedBench(f.options);
  if (!rows.ok()) return Fail(rows.status());
  if (f.json) {
    std::printf("%s\n", fed::BenchJson(*rows).c_str());
    return 0;
  }
  std::printf("%-16s %10s %9s %13s %16s %9s %9s %13s\n", "scheme", "params", "seal_s",
              "accumulate_s", "decrypt_party_s", "finish_s", "round_s", "upload_bytes");
  for (const auto& r : *rows) {
    const std::string round = r.round_s < 0 ? "-" : fmt::format("{:.2f}", r.round_s);
    std::printf("%-16s %10lld %9.3f %13.3f %16.3f %9.3f %9s %13lld\n", r.scheme.c_str(),
                static_cast<long long>(r.params), r.seal_s, r.accumulate_s, r.decrypt_party_s,
                r.finish_s, round.c_str(), static_cast<long long>(r.upload_bytes));
  }
  return 0;
}

}  // namespace

void AddFedCommands(CLI::App& root, CommandContext& ctx) {
  auto* fed_cmd = root.add_subcommand("fed", "Federated learning consortium");
  fed_cmd->require_subcommand(1);
  auto* fed_init = fed_cmd->add_subcommand(
      "init", "Create the consortium CA, mTLS certificates, key shares and bundles");
  struct InitFlags {
    std::string config, out;
  };
  auto fi = Flags<InitFlags>();
  fed_init
      ->add_option("-c,--config", fi->config, "Consortium file (examples/fraud/consortium.toml)")
      ->required()
      ->check(CLI::ExistingFile);
  fed_init->add_option("--out", fi->out, "Output folder (must not exist or be empty)")->required();
  auto* fed_coord =
      fed_cmd->add_subcommand("coordinator", "Run the coordinator (gRPC with mutual TLS)");
  auto creq = Flags<fed::CoordinatorJobRequest>();
  fed_coord
      ->add_option("-c,--config", creq->config_path,
                   "Federation file (examples/fraud/federation.toml)")
      ->required()
      ->check(CLI::ExistingFile);
  fed_coord->add_option("--bundle", creq->bundle,
                        "The coordinator's bundle from `fed init` (overrides federation.bundle)");
  fed_coord->add_option("--set", creq->overrides,
                        "Override a config value: KEY=VALUE (repeatable)");
  fed_coord->add_option(
      "--resume", creq->resume_run,
      "Resume this run (default: the newest run of the same name if it was interrupted or failed)");
  fed_coord->add_flag("--new", creq->fresh,
                      "Start a new run even if one of the same name was interrupted");
  auto* fed_part = fed_cmd->add_subcommand(
      "participant", "Run a participant: dial the coordinator, train, encrypt");
  auto preq = Flags<fed::ParticipantJobRequest>();
  fed_part
      ->add_option("-c,--config", preq->config_path,
                   "Federation file (examples/fraud/federation.toml)")
      ->required()
      ->check(CLI::ExistingFile);
  fed_part->add_option("--bundle", preq->bundle,
                       "This party's bundle from `fed init` (overrides participant.bundle)");
  fed_part->add_option("--set", preq->overrides, "Override a config value: KEY=VALUE (repeatable)");
  fed_part->add_option("--crash-at-round", preq->crash_at_round,
                       "Drill: kill this process (SIGKILL) on receiving round N's model");
  auto* fed_demo =
      fed_cmd->add_subcommand("demo", "The 5-bank fraud consortium on this machine (make demo)");
  auto dreq = Flags<DemoRequest>();
  dreq->source_dir = RONGHE_SOURCE_DIR;
  fed_demo->add_option("--json", dreq->json_path, "Also write the results as JSON to FILE");
  fed_demo->add_option("--rounds", dreq->rounds, "Rounds (default: the federation file's)")
      ->check(CLI::Range(1, 1000));
  fed_demo->add_option("--drop-party", dreq->drop_party,
                       "Bank whose process dies mid-run (default bank-west; \"\" = none)");
  fed_demo->add_option("--drop-at-round", dreq->drop_at_round,
                       "Round in which it dies (default: the middle one)");
  fed_demo->add_option("--workdir", dreq->workdir,
                       "Folder for the consortium and logs (default under $RONGHE_HOME/fed-demo)");
  fed_demo->add_option("--examples", dreq->source_dir,
                       "Folder holding examples/fraud/ (default: the source tree)");

  auto* fed_bench = fed_cmd->add_subcommand(
      "bench", "Time a secure-aggregation round per scheme: 5 parties, 3 of 5, one process");
  auto bf = Flags<BenchFlags>();
  fed_bench
      ->add_option("--params", bf->options.params, "Model size in parameters (default 1000000)")
      ->check(CLI::Range(int64_t{100}, int64_t{100000000}));
  fed_bench->add_option("--schemes", bf->schemes,
                        "Comma-separated: none, paillier, paillier-masked (default "
                        "none,paillier-masked)");
  fed_bench->add_option("--key-bits", bf->options.key_bits, "Threshold Paillier key (default 2048)")
      ->check(CLI::IsMember({2048, 3072}));
  fed_bench->add_option("--threads", bf->options.threads,
                        "Threads per role for the phases (default 0 = all cores)");
  fed_bench->add_flag("--no-round", bf->no_round,
                      "Time the phases only, not a whole federated round");
  fed_bench->add_flag("--json", bf->json,
                      "Print a JSON list of {scheme, params, seal_s, accumulate_s, "
                      "decrypt_party_s, finish_s, round_s, upload_bytes}");
  ctx.On(fed_bench, [bf](const Globals&) { return CmdFedBench(*bf); });
  ctx.On(fed_init, [fi](const Globals&) { return CmdFedInit(fi->config, fi->out); });
  ctx.On(fed_coord, [creq](const Globals& g) { return RunCoordinator(*creq, g); });
  ctx.On(fed_part, [preq](const Globals& g) {
    preq->home = g.home;
    return Done(fed::RunParticipantJob(*preq));
  });
  ctx.On(fed_demo, [dreq](const Globals& g) {
    dreq->home = g.home;
    return Done(RunFedDemo(*dreq));
  });
}

}  // namespace ronghe::cli
