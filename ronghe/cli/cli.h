// The `ronghe` command line. RunCli is the whole program; main() only calls it, so tests can
// run commands in-process as well as through the binary.
//
// Exit codes: 0 success, 2 usage error (bad flag, bad config key or value), 1 any other failure.
#pragma once

namespace ronghe::cli {

int RunCli(int argc, char** argv);

}  // namespace ronghe::cli
