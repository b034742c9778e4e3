#include "ronghe/cli/cli.h"

int main(int argc, char** argv) { return ronghe::cli::RunCli(argc, argv); }
