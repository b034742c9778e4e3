// ronghe's version: one definition, CMake's project(VERSION), for the CLI, the servers' metadata
// and every artifact that records which ronghe wrote it.
#pragma once

namespace ronghe {

// "MAJOR.MINOR.PATCH".
const char* Version();

}  // namespace ronghe
