// Novelty: is a frame unlike every class the model knows? The energy score of Liu et al. (2020),
// E(x) = -log sum_c exp(logit_c): frames of known classes give confident logits and low energy,
// frames of an unseen class higher energy. It needs no change to the model (the logits are what
// the line computes anyway). The threshold is the (1 - false_alarm_rate) quantile of the energies
// of the model's own validation frames: by construction that share of known-class frames is
// flagged, which is the false-alarm rate the line states.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::serve {
class ServedVersion;
}

namespace ronghe::stream {

// Energy of one row of `n` logits (numerically stable).
double Energy(const float* logits, int64_t n);

// The q-quantile (0..1) of `values` (sorted in place), linear between order statistics.
double Quantile(std::vector<double>* values, double q);

struct NoveltyCalibration {
  double threshold = 0;
  double false_alarm_rate = 0;  // asked for
  double measured_rate = 0;     // on the calibration frames (ties can make it lower)
  int64_t frames = 0;
};

// Calibrates on up to `max_frames` validation frames of the data set `version`'s manifest names
// (loaded from `home`, with the manifest's own preprocessing and held-out classes).
Result<NoveltyCalibration> CalibrateNovelty(serve::ServedVersion& version, const std::string& home,
                                            double false_alarm_rate, int64_t max_frames);

}  // namespace ronghe::stream
