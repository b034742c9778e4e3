// Whole jobs as the CLI runs them: config file -> data -> model -> trainer -> artifact, with a
// run-store record from start to finish. Run folders live at $RONGHE_HOME/runs/<id>/ and hold the
// resolved config (config.toml), the latest checkpoint (checkpoint.rhc) and the model (model.rhm).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/data/source.h"
#include "ronghe/dist/collective.h"
#include "ronghe/train/trainer.h"

namespace ronghe::train {

struct TrainJobRequest {
  std::string home;                    // $RONGHE_HOME (resolved)
  std::string config_path;             // a TOML job file (new runs)
  std::vector<std::string> overrides;  // "key=value", applied after the file
  int64_t resume_run = 0;              // > 0: continue this run from its last checkpoint
  std::string out;                     // optional extra path for the model artifact
  // Data-parallel: this process is rank `dist.rank` of `dist.world` (the launcher sets them);
  // world 1 trains alone. Rank 0 resolves the config (file or resumed run), owns the run record,
  // checkpoints and artifact, and sends the resolved config to the other ranks, which need
  // neither a config file nor the run store.
  dist::CollectiveOptions dist{.world = 1};
  int local_world = 1;  // ranks on this host: with train.threads = 0 each takes
                        // 1/local_world of the CPUs instead of all of them
};

struct TrainJobOutcome {
  int64_t run_id = 0;  // 0 on ranks other than 0
  std::string artifact;
  data::Task task = data::Task::kMulticlass;
  TrainResult result;
};

Result<TrainJobOutcome> RunTrainJob(const TrainJobRequest& request);

struct EvalJobRequest {
  std::string home;
  std::string artifact;        // a .rhm file
  std::string split = "test";  // "train", "val" or "test"
};

struct EvalJobOutcome {
  int64_t run_id = 0;
  data::Task task = data::Task::kMulticlass;
  MetricMap metrics;
};

// Rebuilds the artifact's data split with the preprocessing stored in its manifest, and evaluates.
Result<EvalJobOutcome> RunEvalJob(const EvalJobRequest& request);

std::string RunDir(const std::string& home, int64_t run_id);

}  // namespace ronghe::train
