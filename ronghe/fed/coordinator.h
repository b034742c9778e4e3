// The coordinator: drives rounds over whatever connections the transport hands it (gRPC with
// mutual TLS in production, in-memory pipes in tests). Protocol: docs/protocols/federated.md.
//
// It never holds a decryption key: with threshold Paillier (the default) it sees only ciphertexts,
// their homomorphic sum, verified partial decryptions of that sum, and the decoded mean update.
// Every completed round is checkpointed in the run store (model, server-optimizer state, DP
// accounting, round record and metrics in one transaction); Create() with a run id resumes after
// the last completed round.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/consortium.h"
#include "ronghe/fed/strategy.h"
#include "ronghe/fed/transport.h"
#include "ronghe/nn/model.h"
#include "ronghe/store/run_store.h"

namespace ronghe::fed {

struct CoordinatorOptions {
  std::string consortium;            // required
  std::vector<std::string> parties;  // required, in key-share index order
  int threshold = 3;                 // Default: 3. Decrypting parties needed.
  std::shared_ptr<const crypto::ThresholdPublicKey> public_key;  // required for kPaillier
  std::string job_name = "federation";  // Default: "federation". The run's name in the store.
  Schema schema;                        // required: the consortium's (consortium.toml [schema])
  nn::ModelConfig model;           // kind and sizes; input shape and outputs come from `schema`
  int64_t rounds = 10;             // Default: 10.
  int min_participants = 0;        // Default: 0 = threshold. Uploads needed for a round.
  double join_timeout_s = 600;     // Default: 600 s to wait for min_participants.
  double gather_s = 1.0;           // Default: 1 s. Once min_participants are connected, how
                                   // long a round waits for parties that have not joined this
                                   // coordinator yet (one that joined and left is not waited for).
  double round_deadline_s = 1800;  // Default: 1800 s per round attempt (upload + decryption):
                                   // a 1M-parameter Paillier round takes ~5 min on 2 cores.
  double decrypt_timeout_s = 0;    // Default: 0 = 60 s + 50 ms per ciphertext. A decryptor that
                                   // has not answered by then is replaced by the next share holder.
  int decrypt_strikes = 2;         // Default: 2. Decryption failures (no answer in time, a bad
                                   // proof, a refusal) after which a party is not asked again in
                                   // this run.
  int max_rejections = 100;        // Default: 100 refused messages within a minute close the
                                   // sender's stream (the first 10 a minute are answered and
                                   // logged, the rest only counted).
  size_t inbox_bytes_per_party = size_t{256} << 20;  // Default: 256 MiB received from one party
                                                     // and not yet handled: beyond, disconnected.
  int round_attempts = 5;         // Default: 5 attempts per round before the run fails.
  double retry_wait_s = 2;        // Default: 2 s between attempts.
  v1::LocalSettings local;        // epochs, batch_size, optimizer, lr, prox_mu, class_weights
  ServerOptimizerOptions server;  // fedavg | fedadam | fedyogi
  SecureAggregation secure_aggregation =
      SecureAggregation::kPaillierMasked;   // Default: lattice masks, mask keys under threshold
                                            // Paillier; kPaillier = every value encrypted;
                                            // kNone = the plaintext baseline (same sums).
  int precision_bits = 16;                  // Default: 16. Quantisation width per value.
  double clip = 1.0;                        // Default: 1.0. Per-value clip of updates (both modes).
  DpOptions dp;                             // central DP; off by default
  uint64_t seed = 1;                        // Default: 1. Initial weights and per-round seeds.
  size_t chunk_bytes = kDefaultChunkBytes;  // Default: 1 MiB.
  int threads = 0;                          // Default: 0 = all cores (verification, combination).
  int keep_rounds = 1;   // Default: 1. Round checkpoints kept in the store (0 = all).
  std::string runs_dir;  // "" = no artifact; else the final model goes to
                         // runs_dir/<run id>/model.rhm
};

struct RoundReport {
  int64_t round = 0;
  int attempts = 1;
  std::vector<std::string> contributors;  // parties whose update is in the aggregate
  std::vector<std::string> decryptors;    // parties whose verified shares were combined
  std::vector<std::string> excluded;      // "party: reason" (dropped, bad proof, bad upload,
                                          // silent decryptor, not reading its stream)
  double seconds = 0;
  double train_loss = 0;        // mean of the contributors' reported local losses
  double error_bound = 0;       // max |secure mean - plaintext mean| per value
  int64_t max_party_bytes = 0;  // largest bytes on the wire for one party (both ways)
  double epsilon = 0;           // DP spent so far (0 when DP is off)
};

struct CoordinatorResult {
  int64_t run_id = 0;
  int64_t rounds_completed = 0;
  bool resumed = false;
  std::vector<float> weights;
  std::vector<RoundReport> rounds;  // rounds run by this process
  std::string artifact;
  double epsilon = 0;
  bool stopped = false;  // RunCoordinatorJob: drained on SIGTERM/SIGINT; the run resumes later
};

struct CoordinatorTestHooks;  // testing.h

class Coordinator {
 public:
  // resume_run > 0: continue that run from its last checkpoint.
  static Result<std::unique_ptr<Coordinator>> Create(CoordinatorOptions options,
                                                     store::RunStore* store,
                                                     int64_t resume_run = 0);
  ~Coordinator();

  // The transport calls this for each authenticated party, on its own thread; it returns when
  // the connection ends (or the coordinator stops).
  void Serve(const std::string& party, Connection& connection);
  // Runs the remaining rounds. Returns when done, when a round fails `round_attempts` times, or
  // after Stop().
  Result<CoordinatorResult> Run();
  // Makes Run() return (Cancelled) and ends every Serve(). Thread-safe.
  void Stop();
  int64_t run_id() const;
  int64_t rounds_completed() const;  // persisted rounds

  struct Impl;

 private:
  friend void SetTestHooks(Coordinator& coordinator, CoordinatorTestHooks hooks);
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::fed
