// Few-shot adaptation: the line's model gains a class it has never seen, from the K frames people
// labelled in the review queue. The known classes' network stays as it is (its backbone frozen,
// its batch-norm statistics restored) and only the output layer grows a row and is trained, on the
// new frames (with small shifts, for variety) and on replayed frames of every known class from the
// model's own training data, so the old classes are not forgotten. Training runs through
// ronghe/train and is recorded as a run.
//
// The new class's logit bias is then lowered, on validation data, until the known classes lose at
// most three quarters of the allowed accuracy there. The gates, on data the training never saw: the
// old classes' test accuracy may drop at most `max_old_drop`, and the new class's recall on the
// `holdout` labelled frames kept aside must reach `min_new_recall`. A model that passes is released
// as the repository's next version (staged, then one rename: a line sees all of it or nothing); one
// that fails is recorded as refused, with the measurements, and the line keeps its model.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/store/stream_store.h"
#include "ronghe/stream/config.h"

namespace ronghe::stream {

struct AdaptRequest {
  AdaptOptions options;
  std::string repo;   // the serving repository
  std::string model;  // the model's name in it
  std::string home;   // data sets and the run store
  std::string new_class;
  std::vector<store::ReviewFrame> frames;  // labelled new_class, oldest first
  // How a model that passed is released. Default: empty = installed as the repository's next
  // version. Otherwise called with the artifact (in a staging folder that is removed afterwards)
  // and the measurements; returns the repository version it became (e.g. published to a hub,
  // then deployed from it with its evidence).
  std::function<Result<int64_t>(const std::string& artifact, const struct AdaptResult& result)>
      release;
};

struct AdaptResult {
  bool released = false;
  int64_t parent_version = 0, version = 0;  // version: the released one (0 if refused)
  std::string new_class;
  double old_accuracy_before = 0, old_accuracy_after = 0;
  double new_recall = 0;   // on the held-out labelled frames
  double bias_offset = 0;  // added to the new class's logit, chosen on validation data
  int64_t train_frames = 0, holdout_frames = 0;
  std::string reason;  // why refused
  double seconds = 0;
  int64_t run_id = 0;
};

Result<AdaptResult> Adapt(const AdaptRequest& request);

// The highest version directory of REPO/MODEL holding model.rhm (0 when none).
int64_t LatestVersion(const std::string& repo, const std::string& model);

}  // namespace ronghe::stream
