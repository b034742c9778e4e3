// `ronghe fed demo`: the 5-bank fraud consortium on this machine, each bank a separate process
// on loopback (see docs/protocols/federated.md, "The demo"). Orchestration lives here, in the
// command layer, because it starts this very binary; the measurements are fed::EvaluateDemo.
#pragma once

#include <cstdint>
#include <string>

#include "ronghe/base/status.h"

namespace ronghe::cli {

struct DemoRequest {
  std::string home;
  std::string source_dir;                // where examples/fraud/ lives
  std::string workdir;                   // "" = $RONGHE_HOME/fed-demo/<time>
  int64_t rounds = 0;                    // 0 = the federation file's
  std::string drop_party = "bank-west";  // "" = nobody drops
  int64_t drop_at_round = 0;             // 0 = the middle round
  std::string json_path;                 // "" = no JSON
};

// Checks what the demo needs (the data set, the example files) before starting anything; fails
// at once, naming the process and the last line of its log, when a process it waits for exits.
Status RunFedDemo(const DemoRequest& request);

}  // namespace ronghe::cli
