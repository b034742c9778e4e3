// `ronghe stream demo`: the mission's factory end to end (examples/inspection/).
#pragma once

#include "ronghe/cli/command.h"

namespace CLI {
class App;
}

namespace ronghe::cli {

void AddStreamDemoCommand(CLI::App& stream, CommandContext& ctx);

}  // namespace ronghe::cli
