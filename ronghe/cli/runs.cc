// `ronghe runs list|show`: the run store, read.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "ronghe/cli/command.h"
#include "ronghe/cli/print.h"
#include "ronghe/store/run_store.h"

namespace ronghe::cli {

namespace {

int CmdRunsList(const std::string& home, int limit, const std::string& kind) {
  auto store = store::OpenHomeStore(home);
  if (!store.ok()) return Fail(store.status());
  auto runs = (*store)->ListRuns(limit, kind);
  if (!runs.ok()) return Fail(runs.status());
  std::printf("%-5s %-6s %-24s %-12s %-19s %9s %9s  %s\n", "ID", "KIND", "NAME", "STATUS",
              "CREATED", "WALL_S", "CPU_S", "KEY METRIC");
  for (const auto& r : *runs) {
    std::string key;
    for (auto it = r.metrics.rbegin(); it != r.metrics.rend(); ++it) {
      if ((it->split == "test" || (r.kind == "eval")) &&
          (it->name == "accuracy" || it->name == "roc_auc" || it->name == "rmse")) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s %s=%.4f", it->split.c_str(), it->name.c_str(),
                      it->value);
        key = buf;
        break;
      }
    }
    double wall = r.resources ? r.resources->wall_seconds : 0;
    double cpu = r.resources ? r.resources->cpu_user_seconds + r.resources->cpu_system_seconds : 0;
    std::printf("%-5ld %-6s %-24s %-12s %-19s %9.1f %9.1f  %s\n", long(r.id), r.kind.c_str(),
                r.name.substr(0, 24).c_str(), r.status.c_str(), FormatTime(r.created_at).c_str(),
                wall, cpu, key.c_str());
  }
  return 0;
}

int CmdRunsShow(const std::string& home, int64_t id, bool as_json) {
  auto store = store::OpenHomeStore(home);
  if (!store.ok()) return Fail(store.status());
  auto r = (*store)->GetRun(id);
  if (!r.ok()) return Fail(r.status());
  if (as_json) {
    nlohmann::json j = {{"id", r->id},
                        {"kind", r->kind},
                        {"name", r->name},
                        {"status", r->status},
                        {"error", r->error},
                        {"host", r->host},
                        {"pid", r->pid},
                        {"created_at", r->created_at},
                        {"finished_at", r->finished_at},
                        {"config", nlohmann::json::parse(r->config_json, nullptr, false)}};
    for (const auto& m : r->metrics)
      j["metrics"].push_back(
          {{"step", m.step}, {"split", m.split}, {"name", m.name}, {"value", m.value}});
    for (const auto& a : r->artifacts)
      j["artifacts"].push_back(
          {{"kind", a.kind}, {"path", a.path}, {"sha256", a.sha256}, {"bytes", a.bytes}});
    if (r->resources) {
      j["resources"] = {{"wall_seconds", r->resources->wall_seconds},
                        {"cpu_user_seconds", r->resources->cpu_user_seconds},
                        {"cpu_system_seconds", r->resources->cpu_system_seconds},
                        {"peak_rss_bytes", r->resources->peak_rss_bytes},
                        {"device", r->resources->device},
                        {"processes", r->resources->processes}};
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("run %ld  %s  %s\n", long(r->id), r->kind.c_str(), r->name.c_str());
  std::printf("status:    %s%s\n", r->status.c_str(),
              r->error.empty() ? "" : (" - " + r->error).c_str());
  std::printf("created:   %s   finished: %s\n", FormatTime(r->created_at).c_str(),
              FormatTime(r->finished_at).c_str());
  std::printf("host/pid:  %s / %ld\n", r->host.c_str(), long(r->pid));
  if (r->resources) {
    const auto& u = *r->resources;
    std::printf(
        "resources: wall %.1f s, cpu user %.1f s + system %.1f s, peak RSS %s, device %s, %d "
        "process(es)\n",
        u.wall_seconds, u.cpu_user_seconds, u.cpu_system_seconds,
        FormatBytes(u.peak_rss_bytes).c_str(), u.device.c_str(), u.processes);
  }
  // Metrics as one row per (step, split).
  std::map<std::pair<int64_t, std::string>, std::map<std::string, double>> rows;
  for (const auto& m : r->metrics) rows[{m.step, m.split}][m.name] = m.value;
  if (!rows.empty()) std::printf("metrics:\n");
  for (const auto& [key, vals] : rows) {
    std::printf("  %-4ld %-5s", long(key.first), key.second.c_str());
    for (const auto& [k, v] : vals) std::printf(" %s=%.4g", k.c_str(), v);
    std::printf("\n");
  }
  for (const auto& a : r->artifacts) {
    std::printf("artifact:  %-10s %s (%s, sha256 %.16s...)\n", a.kind.c_str(), a.path.c_str(),
                FormatBytes(a.bytes).c_str(), a.sha256.c_str());
  }
  std::printf("config:    %s\n", r->config_json.c_str());
  return 0;
}

}  // namespace

void AddRunsCommands(CLI::App& root, CommandContext& ctx) {
  auto* runs = root.add_subcommand("runs", "Inspect the run store");
  runs->require_subcommand(1);
  struct ListFlags {
    int limit = 20;
    std::string kind;
  };
  auto* list = runs->add_subcommand("list", "List recent runs");
  auto l = Flags<ListFlags>();
  list->add_option("-n,--limit", l->limit, "How many (default 20)")->check(CLI::PositiveNumber);
  list->add_option("--kind", l->kind, "Only runs of this kind (train, eval, ...)");
  ctx.On(list, [l](const Globals& g) { return CmdRunsList(g.home, l->limit, l->kind); });
  struct ShowFlags {
    int64_t run_id = 0;
    bool as_json = false;
  };
  auto* show = runs->add_subcommand("show", "Show one run: config, metrics, artifacts, resources");
  auto s = Flags<ShowFlags>();
  show->add_option("ID", s->run_id, "Run id")->required()->check(CLI::PositiveNumber);
  show->add_flag("--json", s->as_json, "Print as JSON");
  ctx.On(show, [s](const Globals& g) { return CmdRunsShow(g.home, s->run_id, s->as_json); });
}

}  // namespace ronghe::cli
