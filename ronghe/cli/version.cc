// `ronghe version`: this build and the LibTorch it runs on.
#include "ronghe/base/version.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "ronghe/cli/command.h"

namespace ronghe::cli {

void AddVersionCommand(CLI::App& root, CommandContext& ctx) {
  auto* version = root.add_subcommand("version", "Print the version and the libraries it runs on");
  ctx.On(version, [](const Globals& g) {
    std::printf("ronghe %s\nlibtorch %s (CUDA: %s)\n", Version(), TORCH_VERSION,
                torch::cuda::is_available() ? "yes" : "no");
    std::printf("home %s\n", g.home.c_str());
    return 0;
  });
}

}  // namespace ronghe::cli
