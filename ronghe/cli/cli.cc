// The root of the command line: global flags, the table of command groups, exit codes, and one
// catch-all so that no exception (a c10::Error from deep in LibTorch, say) ends the process with
// a stack of template names instead of a one-line error.
#include "ronghe/cli/cli.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "ronghe/base/file.h"
#include "ronghe/cli/command.h"

namespace ronghe::cli {

namespace {

using AddCommands = void (*)(CLI::App& root, CommandContext& ctx);

// The command groups, in the order `ronghe --help` lists them. One line per system.
constexpr AddCommands kCommandGroups[] = {
    AddVersionCommand,  // version
    AddTrainCommands,   // train, eval
    AddRunsCommands,    // runs list|show
    AddDataCommands,    // data list|fetch|info
    AddKeysCommands,    // keys init|inspect, crypto speed
    AddFedCommands,     // fed init|coordinator|participant|demo
    AddServeCommands,   // serve, calibrate, experiments
    AddHubCommands,     // hub keygen|init|publish|pull|show|search|refresh|root
    AddStreamCommands,  // stream run|review|label|status|demo
    AddEdgeCommands,    // export --edge
};

int RunChosen(const Action& action, const Globals& globals) {
  int code = 0;
  Status st = CatchAll([&] {
    code = action(globals);
    return Status::OK();
  });
  return st.ok() ? code : Fail(st);
}

}  // namespace

void CommandContext::On(CLI::App* command, Action action) {
  command->callback([this, action = std::move(action)] { chosen_ = action; });
}

int ExitCode(const Status& st) { return st.code() == StatusCode::kInvalidArgument ? 2 : 1; }

int Fail(const Status& st) {
  std::fprintf(stderr, "ronghe: error: %s\n", st.message().c_str());
  return ExitCode(st);
}

int Done(const Status& st) { return st.ok() ? 0 : Fail(st); }

int RunCli(int argc, char** argv) {
  CLI::App app{"ronghe: federated learning, training and serving on LibTorch"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  std::string home_flag, log_level = "info";
  app.add_option("--home", home_flag, "State folder (default: $RONGHE_HOME or ~/.ronghe)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  CommandContext ctx;
  try {
    for (AddCommands add : kCommandGroups) add(app, ctx);
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  // Logs go to stderr so stdout carries only results (tables, metrics, JSON).
  spdlog::set_default_logger(spdlog::stderr_color_mt("ronghe"));
  spdlog::set_pattern("[%H:%M:%S] %v");
  spdlog::set_level(spdlog::level::from_str(log_level));
  if (!ctx.chosen()) return 0;
  Globals globals;
  globals.home = ResolveHome(home_flag);
  globals.args.assign(argv + 1, argv + argc);
  return RunChosen(ctx.chosen(), globals);
}

}  // namespace ronghe::cli
