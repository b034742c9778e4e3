// Small networking helpers.
#pragma once

#include "ronghe/base/status.h"

namespace ronghe {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). Another
// process may take it before the caller binds it; good enough for demos and tests on one host.
Result<int> FreeLoopbackPort();

}  // namespace ronghe
