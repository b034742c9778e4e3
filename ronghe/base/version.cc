#include "ronghe/base/version.h"

#ifndef RONGHE_VERSION
#error "RONGHE_VERSION must come from CMake's project(VERSION)"
#endif

namespace ronghe {

const char* Version() { return RONGHE_VERSION; }

}  // namespace ronghe
