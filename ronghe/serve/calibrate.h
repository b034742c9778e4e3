// `ronghe calibrate`: picks a cascade route's confidence threshold on the validation split so the
// cascade (light model, escalating rows whose confidence is below the threshold to the full model)
// reaches a target accuracy with as few escalations as possible, then checks the choice on the
// held-out test split.
#pragma once

#include <string>

#include "ronghe/base/status.h"

namespace ronghe::serve {

struct CalibrateRequest {
  std::string home;             // data sets live under $home/data
  std::string repo;             // model repository
  std::string route;            // a cascade entry of the repository
  double target_accuracy = -1;  // Default: -1 = full-only accuracy minus max_drop.
  double max_drop = 0.005;      // Default: 0.5 points below the full model alone.
  bool write = false;           // Default: false. Rewrite the route's `threshold = ...` line.
};

struct CascadeQuality {
  int64_t rows = 0;
  double escalated = 0;  // share of rows sent to the full model
  double cascade_accuracy = 0, full_accuracy = 0, light_accuracy = 0;
  double relative_cost = 0;  // cascade compute / full-only compute, from parameter counts
};

struct CalibrateOutcome {
  double threshold = 0;
  double target = 0;
  CascadeQuality val, test;
};

Result<CalibrateOutcome> Calibrate(const CalibrateRequest& request);

}  // namespace ronghe::serve
