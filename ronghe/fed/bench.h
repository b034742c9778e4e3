// Where the time and bytes of one secure-aggregation round go, per scheme, for a model of a given
// size (issue 14): `ronghe fed bench` and bench/fed_bench. One process, five parties, 3 of 5.
//
// Each phase is timed through the scheme interface on an update of the model's size, as each role
// would run it on its own machine (all cores): a participant's seal, the coordinator's checks and
// sums of five uploads (parsed from their wire bytes), one decrypting party's partial decryption
// with its proof, and the coordinator's finish (three proofs verified, shares combined, the sum
// decoded and range-checked). The whole round is a real federated round over the in-memory
// transport (every message serialised), five participants training an MLP of that size on
// synthetic data and sharing this machine's cores.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::fed {

struct BenchOptions {
  int64_t params = 1000000;  // Default: 1M. Model size (an MLP of about this many parameters).
  std::vector<std::string> schemes = {"none", "paillier-masked"};  // Default: the baseline and
                                                                   // the masked scheme.
  int key_bits = 2048;      // Default: 2048. The threshold Paillier key, dealt once per bench.
  int threads = 0;          // Default: 0 = all cores, for the per-role phases.
  bool whole_round = true;  // Default: true. Also run a real federated round (round_s).
  bool insecure_for_testing = false;  // Default: false. Allows 1024-bit keys (tests only).
};

struct BenchRow {
  std::string scheme;
  int64_t params = 0;
  double seal_s = 0;           // one participant: quantise and seal (mean of five)
  double accumulate_s = 0;     // the coordinator: parse, check and add five uploads
  double decrypt_party_s = 0;  // one decrypting party: partial decryption and its proof
  double finish_s = 0;         // the coordinator: verify three parties, combine, decode
  double round_s = 0;          // a whole federated round (-1 when not run)
  int64_t upload_bytes = 0;    // one party's serialised upload
  int64_t ciphertexts_decrypted = 0;
};

Result<std::vector<BenchRow>> RunFedBench(const BenchOptions& options);
std::string BenchJson(const std::vector<BenchRow>& rows);  // a JSON array, one object per row

}  // namespace ronghe::fed
