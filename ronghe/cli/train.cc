// `ronghe train` (alone or data-parallel through the launcher), `ronghe eval` and `ronghe distill`.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <optional>

#include "ronghe/base/net.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/launch.h"
#include "ronghe/cli/print.h"
#include "ronghe/train/distill.h"
#include "ronghe/train/job.h"

namespace ronghe::cli {

namespace {

struct TrainFlags {
  train::TrainJobRequest req;
  std::string precision, progress, rdzv;
  int64_t epochs = 0, batch = 0, seed = -1, resume = 0;
  double lr = 0;
  LaunchOptions launch;
};

// Where this process stands in a data-parallel run: a launched worker (environment), the
// launcher of --nproc workers, or the only process on its node. Fills f.req.dist; returns a
// launcher's exit code when this process launched workers instead of training.
Result<std::optional<int>> PlaceThisProcess(TrainFlags& f, const Globals& g) {
  ASSIGN_OR_RETURN(WorkerEnv worker, ReadWorkerEnv());
  LaunchOptions& launch = f.launch;
  const int world = launch.nproc * launch.nnodes;
  if (launch.node_rank >= launch.nnodes) {
    return InvalidArgument("--node-rank " + std::to_string(launch.node_rank) +
                           " is outside --nnodes " + std::to_string(launch.nnodes));
  }
  if (launch.nnodes > 1 && f.rdzv.empty())
    return InvalidArgument("--nnodes > 1 needs --rdzv HOST:PORT of node 0");
  // Only rank 0 reads the config; the other ranks receive the one it resolved.
  const bool first = worker.world > 0 ? worker.rank == 0 : launch.node_rank == 0;
  if (f.resume > 0 && !f.req.config_path.empty()) {
    return InvalidArgument("--resume continues a run with its own config; drop --config");
  }
  if (first && f.resume == 0 && f.req.config_path.empty()) {
    return InvalidArgument("train needs --config FILE (or --resume ID)");
  }
  if (worker.world > 0) {
    f.req.dist = {.host = worker.host,
                  .port = worker.port,
                  .rank = worker.rank,
                  .world = worker.world,
                  .timeout_s = worker.timeout_s};
    f.req.local_world = worker.local_world;
    if (worker.rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 speaks for the run
  } else if (world > 1) {
    if (!f.rdzv.empty()) {
      RETURN_IF_ERROR(ParseHostPort(f.rdzv, &launch.host, &launch.port));
    } else {
      ASSIGN_OR_RETURN(launch.port, FreeLoopbackPort());
      launch.host = "127.0.0.1";
    }
    if (launch.nproc > 1) return std::optional<int>(LaunchWorkers(g.args, launch));
    // One process on this node: it is the worker itself.
    f.req.dist = {.host = launch.host,
                  .port = launch.port,
                  .rank = launch.node_rank,
                  .world = world,
                  .timeout_s = launch.timeout_s};
    if (launch.node_rank != 0) spdlog::set_level(spdlog::level::warn);
  }
  return std::optional<int>();
}

int RunTrain(TrainFlags& f, const Globals& g) {
  auto placed = PlaceThisProcess(f, g);
  if (!placed.ok()) return Fail(placed.status());
  if (placed->has_value()) return **placed;
  train::TrainJobRequest& req = f.req;
  req.home = g.home;
  req.resume_run = f.resume;
  if (f.epochs > 0) req.overrides.push_back("train.epochs=" + std::to_string(f.epochs));
  if (f.batch > 0) req.overrides.push_back("train.batch_size=" + std::to_string(f.batch));
  if (f.lr > 0) req.overrides.push_back("train.lr=" + fmt::format("{}", f.lr));
  if (f.seed >= 0) req.overrides.push_back("train.seed=" + std::to_string(f.seed));
  if (!f.precision.empty()) req.overrides.push_back("train.precision=\"" + f.precision + "\"");
  if (!f.progress.empty()) req.overrides.push_back("train.progress=\"" + f.progress + "\"");
  auto r = train::RunTrainJob(req);
  if (!r.ok()) {
    if (req.dist.world > 1) {
      return Fail(Status(r.status().code(),
                         "rank " + std::to_string(req.dist.rank) + ": " + r.status().message()));
    }
    return Fail(r.status());
  }
  if (req.dist.rank != 0) return 0;
  std::printf("run %ld %s: %ld epochs, %ld steps, %.0f samples/s%s%s\n", long(r->run_id),
              r->result.resumed ? "resumed and finished" : "finished",
              long(r->result.epochs_completed), long(r->result.steps), r->result.samples_per_second,
              r->result.world > 1 ? fmt::format(" over {} processes", r->result.world).c_str() : "",
              r->result.stopped_early ? ", stopped early" : "");
  PrintMetrics("test", r->result.test);
  PrintPerResolution(r->result.test);
  std::printf("model: %s\n", r->artifact.c_str());
  return 0;
}

// The teacher beside the student: the metric that says how good each is, size and speed.
void PrintDistillReport(const train::DistillJobOutcome& r) {
  const bool regression = r.task == data::Task::kRegression;
  const std::string metric = regression                      ? "mape"
                             : r.task == data::Task::kBinary ? "roc_auc"
                                                             : "accuracy";
  auto value = [&](const train::MetricMap& m) {
    auto it = m.find(metric);
    return it == m.end() ? std::nan("") : it->second;
  };
  std::printf("%-8s %12s %12s %12s %10s %10s\n", "model", ("test " + metric).c_str(), "parameters",
              "bytes", "p50 ms", "p99 ms");
  for (const auto& [name, m] :
       {std::pair<const char*, const train::ModelReport*>{"teacher", &r.teacher},
        {"student", &r.student}}) {
    std::printf("%-8s %12.4f %12ld %12s %10.3f %10.3f\n", name, value(m->test), long(m->parameters),
                FormatBytes(m->bytes).c_str(), m->p50_ms, m->p99_ms);
  }
  std::printf("(latency: one example at a time, one thread, LibTorch)\n");
}

}  // namespace

void AddTrainCommands(CLI::App& root, CommandContext& ctx) {
  auto* train = root.add_subcommand("train", "Train a model from a TOML job file");
  auto f = Flags<TrainFlags>();
  train->add_option("-c,--config", f->req.config_path, "Job file (examples/*/*.toml)")
      ->check(CLI::ExistingFile);
  train->add_option("--set", f->req.overrides, "Override a config value: KEY=VALUE (repeatable)");
  train->add_option("--epochs", f->epochs, "Override train.epochs")->check(CLI::PositiveNumber);
  train->add_option("--batch-size", f->batch, "Override train.batch_size")
      ->check(CLI::PositiveNumber);
  train->add_option("--lr", f->lr, "Override train.lr")->check(CLI::PositiveNumber);
  train->add_option("--seed", f->seed, "Override train.seed")->check(CLI::NonNegativeNumber);
  train->add_option("--precision", f->precision, "Override train.precision")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  train->add_option("--progress", f->progress, "auto, bar, plain or off")
      ->check(CLI::IsMember({"auto", "bar", "plain", "off"}));
  train->add_option("-o,--out", f->req.out, "Also write the model artifact here");
  train->add_option("--resume", f->resume, "Continue run ID from its last checkpoint")
      ->check(CLI::PositiveNumber);
  train
      ->add_option("--nproc", f->launch.nproc,
                   "Data-parallel worker processes on this host (default 1)")
      ->check(CLI::Range(1, 256));
  train->add_option("--nnodes", f->launch.nnodes, "Hosts taking part (default 1; needs --rdzv)")
      ->check(CLI::Range(1, 4096));
  train
      ->add_option("--node-rank", f->launch.node_rank,
                   "This host's place, 0..nnodes-1 (node 0 hosts the rendezvous)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--rdzv", f->rdzv, "HOST:PORT of node 0's rendezvous (c10d TCPStore)");
  train
      ->add_option("--timeout", f->launch.timeout_s,
                   "Seconds a rank waits for its peers before failing (default 120)")
      ->check(CLI::PositiveNumber);
  ctx.On(train, [f](const Globals& g) { return RunTrain(*f, g); });

  auto* eval = root.add_subcommand("eval", "Evaluate a model artifact on its data set");
  auto e = Flags<train::EvalJobRequest>();
  eval->add_option("-m,--model", e->artifact, "Model artifact (.rhm)")->required();
  eval->add_option("--split", e->split, "train, val or test (default: test)")
      ->check(CLI::IsMember({"train", "val", "test"}));
  ctx.On(eval, [e](const Globals& g) {
    e->home = g.home;
    auto r = train::RunEvalJob(*e);
    if (!r.ok()) return Fail(r.status());
    PrintMetrics(e->split, r->metrics);
    PrintPerResolution(r->metrics);
    std::printf("recorded as run %ld\n", long(r->run_id));
    return 0;
  });

  auto* distill = root.add_subcommand(
      "distill", "Train a small student model on a teacher's outputs and the true targets");
  auto d = Flags<train::DistillJobRequest>();
  distill->add_option("--teacher", d->teacher, "The teacher's model artifact (.rhm)")->required();
  distill
      ->add_option("-c,--config", d->config_path,
                   "The student's job file: [model], [train], [distill] alpha/temperature")
      ->required();
  distill->add_option("--set", d->overrides, "Override a config value: KEY=VALUE (repeatable)");
  distill->add_option("-o,--out", d->out, "Also write the student's artifact here");
  ctx.On(distill, [d](const Globals& g) {
    d->home = g.home;
    auto r = train::RunDistillJob(*d);
    if (!r.ok()) return Fail(r.status());
    std::printf("run %ld distilled %s\n", long(r->run_id), d->teacher.c_str());
    PrintDistillReport(*r);
    PrintMetrics("student test", r->student.test);
    std::printf("model: %s\n", r->artifact.c_str());
    return 0;
  });
}

}  // namespace ronghe::cli
