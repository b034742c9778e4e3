// `ronghe crypto speed`: operations per second of each Paillier and threshold operation, on one
// thread and on all threads, like `openssl speed`. Operators size their hardware with it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::crypto {

struct SpeedResult {
  std::string
      op;  // keygen, encrypt, decrypt, add, partial_decrypt, prove, verify, verify_batch, combine
  int bits = 0;
  int threads = 0;
  double ops_per_s = 0;
};

struct SpeedOptions {
  std::vector<int> bits = {2048, 3072};  // Default: both sizes.
  std::vector<int> threads;              // Default (empty): 1 and every logical CPU.
  double seconds = 1.0;                  // Default: 1. Minimum measuring time per figure.
  int batch = 1000;                      // Default: 1000. Shares per verify_batch call.
  bool keygen = true;                    // Default: true. The dealer ceremony (slow at 3072).
  std::function<void(const SpeedResult&)> on_result;  // called as each figure is ready
};

Result<std::vector<SpeedResult>> RunSpeed(const SpeedOptions& options);

}  // namespace ronghe::crypto
