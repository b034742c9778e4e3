// The command table's contract. Each command group (train, runs, data, keys, fed, serve, ...)
// lives in its own file, adds its subcommands to the root with their flags, and gives each leaf
// an action; cli.cc parses, resolves the global flags, and runs the one chosen action under one
// catch-all. Adding a system = one `<group>.cc` with an `Add<Group>Commands` and one line in
// kCommandGroups (cli.cc).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace CLI {
class App;
}

namespace ronghe::cli {

// What every action sees: the global flags, resolved after parsing.
struct Globals {
  std::string home;               // --home, else $RONGHE_HOME, else ~/.ronghe
  std::vector<std::string> args;  // argv without the program (the launcher re-runs them)
};

using Action = std::function<int(const Globals&)>;

// Collects the chosen subcommand's action while CLI11 parses.
class CommandContext {
 public:
  // `command`'s action runs when the command line chose it.
  void On(CLI::App* command, Action action);
  // The chosen action; empty when none was chosen (a group without its subcommand).
  const Action& chosen() const { return chosen_; }

 private:
  Action chosen_;
};

// Flags that outlive the parse: a group allocates its flag structs with this, so the actions
// (run after parsing) read what CLI11 wrote.
template <typename T>
std::shared_ptr<T> Flags() {
  return std::make_shared<T>();
}

// Exit codes: 2 for usage errors (InvalidArgument), 1 for any other failure.
int ExitCode(const Status& st);
// Prints "ronghe: error: <message>" on stderr; returns the exit code.
int Fail(const Status& st);
// OK -> 0, else Fail(st).
int Done(const Status& st);

// The groups, one file each.
void AddVersionCommand(CLI::App& root, CommandContext& ctx);
void AddTrainCommands(CLI::App& root, CommandContext& ctx);  // train, eval
void AddRunsCommands(CLI::App& root, CommandContext& ctx);
void AddDataCommands(CLI::App& root, CommandContext& ctx);
void AddKeysCommands(CLI::App& root, CommandContext& ctx);  // keys, crypto
void AddHubCommands(CLI::App& root, CommandContext& ctx);   // hub keygen|init|publish|...
void AddFedCommands(CLI::App& root, CommandContext& ctx);
void AddServeCommands(CLI::App& root, CommandContext& ctx);   // serve, calibrate, experiments
void AddStreamCommands(CLI::App& root, CommandContext& ctx);  // stream run|review|label|status|demo
void AddEdgeCommands(CLI::App& root, CommandContext& ctx);    // export --edge

}  // namespace ronghe::cli
