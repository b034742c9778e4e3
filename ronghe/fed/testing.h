// Test-only hooks into the federated runtime: a cheating participant, a coordinator "killed"
// after a round, an observer of plaintext updates. They are not options a deployment can set:
// only code that includes this header and calls SetTestHooks on a live object uses them.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ronghe/crypto/threshold.h"
#include "ronghe/fed/coordinator.h"
#include "ronghe/fed/participant.h"

namespace ronghe::fed {

struct CoordinatorTestHooks {
  // Called after round r is persisted (a test stops the coordinator here).
  std::function<void(int64_t round)> after_round;
};

struct ParticipantTestHooks {
  // Alters the partial decryption before it is sent (a cheating party).
  std::function<void(crypto::PartialDecryption&)> tamper_partial;
  // Sees the clipped plaintext update (to check it never crosses the wire).
  std::function<void(const std::vector<float>&)> observe_update;
};

// Before Run().
void SetTestHooks(Coordinator& coordinator, CoordinatorTestHooks hooks);
void SetTestHooks(Participant& participant, ParticipantTestHooks hooks);

}  // namespace ronghe::fed
