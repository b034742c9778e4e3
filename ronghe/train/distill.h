// Knowledge distillation as a job: a small student learns from a trained teacher's outputs and the
// true targets (the loss mix in TrainOptions::distill_*), on the teacher's own data and inputs.
// Forecasters (regression) and classifiers (soft targets with a temperature) alike, so a light
// model for the serving cascade or an edge node comes from here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/data/source.h"
#include "ronghe/train/metrics.h"

namespace ronghe::train {

struct DistillJobRequest {
  std::string home;                    // $RONGHE_HOME (resolved)
  std::string teacher;                 // the teacher's artifact (.rhm)
  std::string config_path;             // the student's job file: [job], [model], [train],
                                       // [distill] (no [data]: the teacher's data is used)
  std::vector<std::string> overrides;  // "key=value", applied after the file
  std::string out;                     // optional extra path for the student's artifact
};

// One model of the comparison.
struct ModelReport {
  MetricMap test;  // test metrics in original units (mape, mae, rmse / accuracy, ...)
  int64_t parameters = 0;
  int64_t bytes = 0;              // the artifact file
  double p50_ms = 0, p99_ms = 0;  // one example at a time, one thread, LibTorch
};

struct DistillJobOutcome {
  int64_t run_id = 0;
  std::string artifact;  // the student's
  data::Task task = data::Task::kRegression;
  ModelReport teacher, student;
};

// Runs a "distill" job in the run store: records the config (with the teacher's path and
// sha256), the student's training, its metrics and the teacher's test metrics (names
// "teacher_<metric>"), and writes runs/<id>/model.rhm whose manifest names its teacher.
Result<DistillJobOutcome> RunDistillJob(const DistillJobRequest& request);

}  // namespace ronghe::train
