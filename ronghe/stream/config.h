// A line's configuration file (line.toml); docs/stream.md has the reference:
//   [line]      name, model, repo (a serving repository), hub, hub_version, http, watch_s
//   [batching]  max_batch, max_wait_ms, inference_threads, capture_threads
//   [queue]     depth
//   [novelty]   score, false_alarm_rate, calibration_frames
//   [rollback]  window, max_novelty_ratio, max_latency_ratio
//   [adapt]     enabled, k, ... (adapt.h)
//   [cameras.NAME]  a group of cameras: kind = "images" | "video" | "rtsp", count, fps, ...
// Every key is checked: an unknown one is an error naming the file and the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/stream/pipeline.h"

namespace ronghe::stream {

struct AdaptOptions {
  bool enabled = false;  // Default: off. On one line of a fleet: it adapts for all.
  int64_t k = 10;        // Default: 10 labelled frames of a new class start a job.
  int64_t holdout = 3;   // Default: 3 of the K held out to measure the new class's recall.
  int64_t epochs = 30;   // Default: 30 (a head on few frames: cheap).
  double lr = 0.01;      // Default: 0.01.
  int64_t replay_per_class = 200;  // Default: 200 frames of each known class replayed.
  double max_old_drop = 0.01;      // Default: 1 point of old-class test accuracy, at most.
  double min_new_recall = 0.5;     // Default: half the held-out new-class frames recognised.
  double poll_s = 1.0;             // Default: how often the labels are counted.
  uint64_t seed = 1;
  std::string hub;  // Default: "" = release into the repository. Else a hub directory: a model
                    // that passes is published there (signed with `key`) and deployed from it.
  std::string key;  // a publisher key of the hub (hub.key)
};

struct LineConfig {
  PipelineOptions pipeline;
  std::vector<SourceSpec> sources;
  std::string repo;    // the serving repository (absolute)
  int http_port = -1;  // Default: -1 = no HTTP; 0 = any free port.
  std::string http_host = "127.0.0.1";
  double watch_s = 1.0;  // Default: the repository is polled every second.
  std::string hub;       // Default: "" = the repository as it is. Else a hub (directory or URL):
                         // the line installs `line.model`'s newest version (or hub_version) from
                         // it into the repository first, verified (as `ronghe hub deploy`).
  std::string hub_version;
  AdaptOptions adapt;
};

// Reads `path`; relative paths in it are relative to its folder. `home` holds the data sets.
Result<LineConfig> LoadLineConfig(const std::string& path, const std::string& home);

}  // namespace ronghe::stream
