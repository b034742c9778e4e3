// Federated jobs as the CLI runs them. One federation file (examples/fraud/federation.toml)
// serves both roles: the coordinator reads [job], [federation], [model] and [local]; a
// participant reads [participant], [data] and [partition]. Each process also gets its own bundle
// from `ronghe fed init` (--bundle), which says who it is and holds its certificate and keys.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/fed/coordinator.h"

namespace ronghe::fed {

struct CoordinatorJobRequest {
  std::string home;                    // $RONGHE_HOME
  std::string config_path;             // the federation file
  std::vector<std::string> overrides;  // "key=value"
  std::string bundle;                  // overrides federation.bundle
  int64_t resume_run = 0;              // > 0: resume this run; 0: resume the newest run of the same
                                       // name if it was interrupted or failed, else start a new run
  bool fresh = false;                  // never resume automatically
};

// Serves until the configured rounds are done (SIGINT/SIGTERM stop it; the run can be resumed).
Result<CoordinatorResult> RunCoordinatorJob(const CoordinatorJobRequest& request);

struct ParticipantJobRequest {
  std::string home;
  std::string config_path;
  std::vector<std::string> overrides;
  std::string bundle;          // overrides participant.bundle
  int64_t crash_at_round = 0;  // drill: SIGKILL itself on receiving this round's task
};

Status RunParticipantJob(const ParticipantJobRequest& request);

}  // namespace ronghe::fed
