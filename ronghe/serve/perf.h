// `ronghe perf`: how fast a served model answers, in the spirit of Triton's perf_analyzer.
//
//   Load (MeasureLoad): closed-loop clients over HTTP keep-alive connections, `concurrency` of
//   them at a time, each sending the same v2 request (JSON, or the binary tensor extension) as
//   soon as its previous answer arrived; one row per concurrency level.
//   In process (MeasureForward): the model's own forward pass on batches of each size, on
//   `instances` copies in parallel with `threads` intra-op threads each (the server's own
//   defaults): the limit any server of this model on these cores can reach.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::serve {

struct LoadOptions {
  std::string url;      // http://HOST:PORT (plain HTTP)
  std::string model;    // required
  std::string version;  // Default: "" = the model's default.
  std::string input;    // a file holding one v2 JSON inference request body (required)
  std::vector<int> concurrency = {1, 8, 32};  // Default: 1, 8, 32 clients.
  bool binary = false;    // Default: JSON. true: the binary tensor extension both ways.
  double duration_s = 5;  // Default: 5 s measured per level,
  double warmup_s = 1;    // after 1 s of the same load unmeasured.
};

struct LoadRow {
  int concurrency = 0;
  int64_t requests = 0;  // answered 200 in the measured window
  int64_t errors = 0;    // any other answer, or none
  double requests_per_s = 0;
  double p50_ms = 0, p99_ms = 0;
};

// Errors: an unreadable or invalid input file, a URL that is not http://HOST:PORT, a server that
// does not answer the first request with 200 (its message is the error).
Result<std::vector<LoadRow>> MeasureLoad(const LoadOptions& options);

struct ForwardOptions {
  std::string repo;                               // model repository (required)
  std::string model;                              // required
  std::string version;                            // Default: "" = the highest version directory.
  std::vector<int64_t> batch_sizes = {1, 8, 32};  // Default: 1, 8, 32 rows.
  int threads = 1;        // Default: 1 intra-op thread per instance, as `ronghe serve`.
  int instances = 0;      // Default: 0 = one per core this process may run on, as `ronghe serve`.
  double duration_s = 2;  // Default: 2 s measured per batch size, after a short warm-up.
};

struct ForwardRow {
  int64_t batch_size = 0;
  double rows_per_s = 0;
  double batch_ms = 0;  // mean forward time of one batch on one instance
};

Result<std::vector<ForwardRow>> MeasureForward(const ForwardOptions& options);

nlohmann::json ToJson(const LoadRow& row);
nlohmann::json ToJson(const ForwardRow& row);

}  // namespace ronghe::serve
