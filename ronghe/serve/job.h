// `ronghe serve`: a repository served over HTTP (and gRPC) until a signal, recorded as a run.
#pragma once

#include <cstdint>
#include <string>

#include "ronghe/base/status.h"

namespace ronghe::serve {

struct ServeJobRequest {
  std::string repo;                 // model repository (required)
  std::string host = "0.0.0.0";     // Default: every interface.
  int http_port = 8000;             // Default: 8000; 0 = any free port (printed).
  int grpc_port = -1;               // Default: -1 = no gRPC; 0 = any free port (printed).
  int http_loops = 0;               // Default: 0 = one HTTP event loop per core (plaintext).
  int http_threads = 256;           // Default: 256 connection threads, HTTPS only (HttpOptions).
  int64_t max_batch_size = -1;      // Default: -1 = each model's config; >= 0 overrides (0 = off).
  int64_t max_queue_delay_us = -1;  // Default: -1 = each model's config.
  int instances = 0;                // Default: 0 = each model's config (whose default is the
                                    // cores the server may run on).
  double watch_s = 0;               // Default: 0 = no repository watch.
  std::string access_log;           // Default: none; "-" = stdout.
  int threads = 1;                  // Default: 1 intra-op thread (LibTorch and OpenBLAS) per model
                                    // instance: a server's parallelism comes from concurrent
                                    // requests and instances, and idle BLAS threads spinning in
                                    // sched_yield took a quarter of the CPU from the request
                                    // threads (docs/benchmarks.md: 2.4x the throughput at 32
                                    // connections with 1 thread instead of 2).
  std::string tls_cert, tls_key;    // Default: none = plaintext. Both: HTTPS and gRPC over TLS.
  std::string tls_client_ca;        // Default: none. With it, clients need a certificate it signed.
  std::string home;                 // run store: $home/ronghe.db
};

// Intra-op threads of LibTorch and of OpenBLAS (process-wide), as `ronghe serve --threads` sets.
void SetComputeThreads(int threads);

// Serves until SIGINT/SIGTERM, then stops accepting, lets requests in flight finish and exits.
// Records a "serve" run in the run store. Prints "serving ... on http://HOST:PORT" (https://
// with TLS) when ready.
Status RunServeJob(const ServeJobRequest& request);

}  // namespace ronghe::serve
