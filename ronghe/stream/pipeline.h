// A production line: many cameras, one classifier. Each camera (FrameSource) is read on a
// capture thread at its own rate into a bounded queue of its own that drops the oldest frame when
// the line is behind (counted per camera, never silent), preprocessed on the way in (region of
// interest, resize, normalisation from the model's manifest). One batcher takes frames from every
// queue in turn (max batch, max wait) and runs them through the model a serving repository holds
// (ronghe/serve), so the line hot-swaps versions the way a server does: a batch resolves the
// version it runs on, and a batch in flight finishes on it. Each decision becomes an event in the
// store; a frame unlike every known class (a novelty score above a threshold calibrated on the
// model's validation data to a stated false-alarm rate, novelty.h) also goes to the review queue.
//
// Frame accounting per camera is exact: frames_in = decided + dropped once the line has stopped
// (Stop drains every queue), and at any moment frames_in = decided + dropped + queued + in flight.
//
// Versions: the line follows the highest version the repository has loaded (the "channel"),
// switching once the new version is calibrated. It judges the new version on its first
// `rollback_window` frames against the previous one (novelty rate and p99 latency) and rolls back
// (recorded in the store, so a restarted line stays off it) when either is off by the stated
// ratios.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/stream/source.h"

namespace ronghe::serve {
class ModelRepository;
}
namespace ronghe::store {
class StreamStore;
}

namespace ronghe::stream {

struct SourceSpec {
  std::string name;
  // Opens the camera on its capture thread, so an unreachable URL fails that camera alone.
  std::function<Result<std::unique_ptr<FrameSource>>()> open;
  std::vector<int64_t> roi;              // x, y, width, height; Default: empty = whole frame.
  std::vector<std::string> truth_names;  // names of the source's own labels (replayed data sets)
};

struct PipelineOptions {
  std::string line = "line";               // this line's name (events, status)
  std::string model;                       // the classifier's name in the repository (required)
  serve::ModelRepository* repo = nullptr;  // required; the line follows its versions
  store::StreamStore* store = nullptr;     // Default: none (no events, review or line state).
  std::string home;                        // where the model's data set is, for calibration
  int64_t max_batch = 64;                  // Default: 64 frames per batch.
  int64_t max_wait_us = 20000;             // Default: 20 ms: the oldest frame's wait for company.
  int64_t queue_depth = 4;                 // Default: 4 frames per camera, then the oldest drops.
  int capture_threads = 1;                 // Default: 1, for every replayed or file camera.
  int inference_threads = 1;               // Default: 1 (each runs one batch at a time).
  std::string novelty_score = "mahalanobis";  // Default: the embedding's distance to the nearest
                                              // class (needs a repository opened with
                                              // embeddings); or "energy" (novelty.h).
  double false_alarm_rate = 0.01;             // Default: 1% of known-class frames flagged as novel.
  int64_t calibration_frames = 5000;          // Default: 5000 validation frames for the threshold.
  double flush_every_s = 0.25;                // Default: events and review frames to the store.
  double follow_every_s = 0.5;     // Default: how often the line looks for a new version.
  int64_t rollback_window = 300;   // Default: frames judged on a new version.
  double max_novelty_ratio = 3.0;  // Default: roll back above 3x the old novelty rate
                                   // (and at least 5 points above it).
  double max_latency_ratio = 3.0;  // Default: roll back above 3x the old p99 (+20 ms).
  double slow_model_ms = 0;        // Tests: extra time per batch (a slowed model).
};

struct SourceStats {
  std::string name;
  std::string state;   // "running", "ended", "failed"
  std::string detail;  // why failed
  int64_t frames_in = 0, decided = 0, dropped = 0, dropped_errors = 0, flagged = 0, queued = 0;
  double p99_ms = 0;
};

struct LineStats {
  std::vector<SourceStats> sources;
  int64_t frames_in = 0, decided = 0, dropped = 0, flagged = 0, queued = 0;
  int64_t batches = 0, mixed_batches = 0;  // batches holding frames of more than one camera
  int64_t version = 0;
  bool pinned = false;  // rolled back
  double threshold = 0;
  double p99_ms = 0;
  double novelty_rate = 0;  // flagged / decided on the current version
  std::vector<std::string> classes;
};

class Pipeline {
 public:
  // Loads the current version (calibrating its novelty threshold) and starts every camera.
  static Result<std::unique_ptr<Pipeline>> Start(const PipelineOptions& options,
                                                 std::vector<SourceSpec> sources);
  ~Pipeline();

  // Stops the cameras, decides every queued frame, writes the rest to the store.
  void Stop();
  // Waits until every camera has ended or failed (finite replays); false on timeout.
  bool WaitSourcesDone(double timeout_s);

  LineStats Stats() const;
  std::string PrometheusText() const;

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::stream
