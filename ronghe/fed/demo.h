// The measurements behind `ronghe fed demo`'s table, once its two federations (secure and
// plaintext, same seed) have run: each bank's local-only model against the federated one on the
// shared held-out test set, and how far the secure model is from the plaintext one. No processes
// here: the command layer (ronghe/cli/fed_demo.cc) starts the coordinator and the banks.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::fed {

// The operating point: flag the riskiest 10% of the validation set's good loans (FPR 10% on
// validation); recall and FPR are then measured on the test set at that score threshold.
constexpr double kDemoTargetFpr = 0.10;

struct DemoModelMetrics {
  std::string name;
  int64_t examples = 0;
  double recall = 0, fpr = 0, roc_auc = 0, pr_auc = 0;
  nlohmann::json ToJson() const;
};

struct DemoEvaluationRequest {
  std::string home;                  // where the data set is fetched
  std::string federation_file;       // examples/fraud/federation.toml
  std::vector<std::string> parties;  // bank names; the part after the last '-' is its region
  int64_t rounds = 0;                // rounds both federations ran (local-only epochs scale by it)
  std::string secure_artifact, plain_artifact;
  int64_t secure_run_id = 0, plain_run_id = 0;  // their round-1 checkpoints are compared
};

struct DemoEvaluation {
  int64_t test_rows = 0;
  double test_bad_percent = 0;
  DemoModelMetrics federated;
  std::vector<DemoModelMetrics>
      local_only;                          // one per party, trained alone as long as the federation
  double max_diff = 0, bound = 0;          // max |secure - plaintext| weight over every round
                                           // (0: the schemes sum the same quantised updates)
  double first_diff = 0, first_bound = 0;  // after round 1
};

Result<DemoEvaluation> EvaluateDemo(const DemoEvaluationRequest& request);

}  // namespace ronghe::fed
