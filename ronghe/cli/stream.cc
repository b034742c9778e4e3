// `ronghe stream run|review|label|status|demo`: streaming visual inspection (ronghe/stream).
// A line runs as `stream run --config line.toml`; review, label and status read and write the
// run store that every line of the fleet shares.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/hub_deploy.h"
#include "ronghe/cli/stream_demo.h"
#include "ronghe/hub/hub.h"
#include "ronghe/serve/repository.h"
#include "ronghe/store/run_store.h"
#include "ronghe/store/stream_store.h"
#include "ronghe/stream/adapt.h"
#include "ronghe/stream/config.h"
#include "ronghe/stream/pipeline.h"

namespace ronghe::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json StatsJson(const stream::LineStats& s) {
  json cams = json::array();
  for (const auto& c : s.sources) {
    cams.push_back({{"name", c.name},
                    {"state", c.state},
                    {"detail", c.detail},
                    {"frames_in", c.frames_in},
                    {"frames_decided", c.decided},
                    {"frames_dropped", c.dropped},
                    {"dropped_errors", c.dropped_errors},
                    {"flagged", c.flagged},
                    {"queued", c.queued},
                    {"p99_ms", c.p99_ms}});
  }
  return {{"frames_in", s.frames_in},
          {"frames_decided", s.decided},
          {"frames_dropped", s.dropped},
          {"flagged", s.flagged},
          {"queued", s.queued},
          {"batches", s.batches},
          {"mixed_batches", s.mixed_batches},
          {"version", s.version},
          {"pinned", s.pinned},
          {"threshold", s.threshold},
          {"p99_ms", s.p99_ms},
          {"novelty_rate", s.novelty_rate},
          {"classes", s.classes},
          {"cameras", cams}};
}

json ReviewJson(const store::ReviewFrame& f) {
  return {{"id", f.id},
          {"line", f.line},
          {"source", f.source},
          {"seq", f.seq},
          {"frame_time", f.frame_time},
          {"predicted", f.predicted},
          {"confidence", f.confidence},
          {"score", f.score},
          {"model_version", f.model_version},
          {"source_label", f.truth},
          {"label", f.label}};
}

// Publishes an adapted model to the hub (signed by the line's publisher key, with a card of its
// measurements) and deploys it from there into the repository, evidence included: the lines then
// load what the hub signed.
Result<int64_t> ReleaseThroughHub(const stream::AdaptRequest& r, const std::string& artifact,
                                  const stream::AdaptResult& res) {
  ASSIGN_OR_RETURN(hub::SigningKey key, hub::SigningKey::Load(r.options.key));
  const int64_t next = stream::LatestVersion(r.repo, r.model) + 1;
  const std::string version = std::to_string(next) + ".0.0";
  const std::string card = fs::path(artifact).parent_path().string() + "/card.md";
  char metrics[256];
  std::snprintf(metrics, sizeof metrics,
                "## Metrics\n- accuracy_old_classes: %.4f\n- new_class_recall: %.4f\n",
                res.old_accuracy_after, res.new_recall);
  RETURN_IF_ERROR(WriteFileAtomic(
      card, "# " + r.model + " " + version + ": learns '" + r.new_class + "'\n\nReleased by " +
                "`ronghe stream` adaptation (run " + std::to_string(res.run_id) +
                ") from version " + std::to_string(res.parent_version) + ", on " +
                std::to_string(res.train_frames) +
                " labelled frames; the old classes' test accuracy went from " +
                std::to_string(res.old_accuracy_before) + " to " +
                std::to_string(res.old_accuracy_after) + ".\n\n" + metrics));
  ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(artifact));
  hub::PublishRequest p;
  p.model_path = artifact;
  p.card_path = card;
  p.name = r.model;
  p.version = version;
  p.provenance = {{"artifact", {{"sha256", sha}, {"bytes", fs::file_size(artifact)}}},
                  {"adaptation",
                   {{"new_class", r.new_class},
                    {"parent_version", res.parent_version},
                    {"old_accuracy_before", res.old_accuracy_before},
                    {"old_accuracy_after", res.old_accuracy_after},
                    {"new_recall", res.new_recall},
                    {"run_id", res.run_id}}}};
  RETURN_IF_ERROR(hub::Publish(r.options.hub, p, key));
  Globals g;
  g.home = r.home;
  HubDeployRequest d;
  d.hub = r.options.hub;
  d.ref = r.model + "@" + version;
  d.repo = r.repo;
  d.as = r.model;
  ASSIGN_OR_RETURN(HubDeployResult out, DeployFromHub(g, d));
  return out.repo_version;
}

// Polls the labels; when a class the running model lacks has K of them, adapts and releases.
// A refused attempt is tried again only once more labels of that class arrive.
void AdaptLoop(const stream::AdaptRequest& base, store::StreamStore* st, stream::Pipeline* line,
               std::atomic<bool>* stop) {
  std::map<std::string, size_t> tried;  // class -> labelled frames at the last attempt
  while (!stop->load()) {
    for (int i = 0; i < static_cast<int>(base.options.poll_s * 10) && !stop->load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    auto counts = st->LabelCounts(base.model);
    if (!counts.ok()) continue;
    const auto known = line->Stats().classes;
    for (const auto& [label, n] : *counts) {
      if (std::find(known.begin(), known.end(), label) != known.end()) continue;
      if (n < base.options.k) continue;
      auto frames = st->Labelled(base.model, label);
      if (!frames.ok()) continue;
      if (tried.count(label) && tried[label] >= frames->size()) continue;
      tried[label] = frames->size();
      stream::AdaptRequest r = base;
      r.new_class = label;
      if (!base.options.hub.empty()) {
        r.release = [r](const std::string& artifact, const stream::AdaptResult& res) {
          return ReleaseThroughHub(r, artifact, res);
        };
      }
      // The latest K labels: the frames people looked at most recently, as the model stands.
      r.frames.assign(frames->end() - base.options.k, frames->end());
      std::fprintf(stderr, "ronghe stream: %lld labelled frames of new class '%s': adapting\n",
                   static_cast<long long>(n), label.c_str());
      auto res = stream::Adapt(r);
      store::Release rel;
      rel.model = base.model;
      rel.new_class = label;
      if (!res.ok()) {
        rel.status = "failed";
        rel.detail_json = json{{"error", res.status().message()}}.dump();
        std::fprintf(stderr, "ronghe stream: adaptation failed: %s\n",
                     res.status().message().c_str());
      } else {
        rel.version = res->version;
        rel.status = res->released ? "released" : "refused";
        rel.detail_json = json{
            {"parent_version", res->parent_version},
            {"old_accuracy_before", res->old_accuracy_before},
            {"old_accuracy_after", res->old_accuracy_after},
            {"new_recall", res->new_recall},
            {"train_frames", res->train_frames},
            {"holdout_frames", res->holdout_frames},
            {"seconds", res->seconds},
            {"run_id", res->run_id},
            {"reason",
             res->reason}}.dump();
        std::fprintf(stderr,
                     "ronghe stream: adaptation for '%s' %s%s (old accuracy %.4f -> %.4f, new "
                     "recall %.3f, %.1f s, run %lld)\n",
                     label.c_str(), res->released ? "released version " : "refused: ",
                     res->released ? std::to_string(res->version).c_str() : res->reason.c_str(),
                     res->old_accuracy_before, res->old_accuracy_after, res->new_recall,
                     res->seconds, static_cast<long long>(res->run_id));
      }
      (void)st->AddRelease(&rel);
    }
  }
}

struct RunFlags {
  std::string config, json_out;
  double duration_s = 0;
};

int CmdRun(const Globals& g, const RunFlags& f) {
  // Signals are taken by sigtimedwait below: blocked before any thread exists.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto cfg = stream::LoadLineConfig(f.config, g.home);
  if (!cfg.ok()) return Fail(cfg.status());
  auto st = store::StreamStore::Open(store::HomeStorePath(g.home));
  if (!st.ok()) return Fail(st.status());
  if (!cfg->hub.empty()) {
    // The classifier from the hub: verified and installed (or the installed copy reused) before
    // the repository opens, under whatever policy the repository states.
    HubDeployRequest d;
    d.hub = cfg->hub;
    d.ref =
        cfg->pipeline.model + (cfg->hub_version.empty() ? std::string() : "@" + cfg->hub_version);
    d.repo = cfg->repo;
    d.as = cfg->pipeline.model;
    d.reuse = true;
    Status made = MakeDirs(cfg->repo);
    if (!made.ok()) return Fail(made);
    auto got = DeployFromHub(g, d);
    if (!got.ok()) return Fail(got.status());
    std::printf("%s %s@%s from %s as version %lld\n", got->reused ? "using" : "installed",
                got->name.c_str(), got->version.c_str(), cfg->hub.c_str(),
                static_cast<long long>(got->repo_version));
  }
  serve::RepositoryOptions ro;
  ro.dir = cfg->repo;
  ro.max_batch_size = cfg->pipeline.max_batch;
  ro.max_queue_delay_us = 0;
  ro.instances = cfg->pipeline.inference_threads;
  ro.embeddings = cfg->pipeline.novelty_score == "mahalanobis";
  auto repo = serve::ModelRepository::Open(ro);
  if (!repo.ok()) return Fail(repo.status());
  (*repo)->StartWatch(cfg->watch_s);
  stream::PipelineOptions po = cfg->pipeline;
  po.repo = repo->get();
  po.store = st->get();
  auto line = stream::Pipeline::Start(po, cfg->sources);
  if (!line.ok()) return Fail(line.status());
  stream::Pipeline* p = line->get();
  std::unique_ptr<httplib::Server> http;
  std::thread http_thread;
  if (cfg->http_port >= 0) {
    http = std::make_unique<httplib::Server>();
    store::StreamStore* s = st->get();
    const std::string model = po.model;
    http->Get("/metrics", [p](const httplib::Request&, httplib::Response& res) {
      res.set_content(p->PrometheusText(), "text/plain; version=0.0.4");
    });
    http->Get("/v1/stream/status", [p](const httplib::Request&, httplib::Response& res) {
      res.set_content(StatsJson(p->Stats()).dump(), "application/json");
    });
    http->Get("/v1/stream/review", [s, model](const httplib::Request&, httplib::Response& res) {
      auto frames = s->Review(model, true, 1000);
      if (!frames.ok()) {
        res.status = 503;
        res.set_content(json{{"error", frames.status().message()}}.dump(), "application/json");
        return;
      }
      json out = json::array();
      for (const auto& fr : *frames) out.push_back(ReviewJson(fr));
      res.set_content(out.dump(), "application/json");
    });
    http->Post("/v1/stream/label", [s](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body, nullptr, false);
      if (body.is_discarded() || !body.is_object() || !body.contains("ids") ||
          !body["ids"].is_array() || !body.contains("class") || !body["class"].is_string()) {
        res.status = 400;
        res.set_content(json{{"error", "want {\"ids\": [frame ids], \"class\": \"NAME\"}"}}.dump(),
                        "application/json");
        return;
      }
      std::vector<int64_t> ids;
      for (const auto& id : body["ids"]) {
        if (!id.is_number_integer()) {
          res.status = 400;
          res.set_content(json{{"error", "ids must be integers"}}.dump(), "application/json");
          return;
        }
        ids.push_back(id.get<int64_t>());
      }
      Status r = s->Label(ids, body["class"].get<std::string>());
      if (!r.ok()) {
        res.status = r.code() == StatusCode::kNotFound ? 404 : 400;
        res.set_content(json{{"error", r.message()}}.dump(), "application/json");
        return;
      }
      res.set_content(json{{"labelled", ids.size()}}.dump(), "application/json");
    });
    const int port =
        cfg->http_port == 0
            ? http->bind_to_any_port(cfg->http_host)
            : (http->bind_to_port(cfg->http_host, cfg->http_port) ? cfg->http_port : -1);
    if (port < 0) {
      p->Stop();
      return Fail(Unavailable("line.http: cannot listen on " + cfg->http_host + ":" +
                              std::to_string(cfg->http_port)));
    }
    http_thread = std::thread([&http] { http->listen_after_bind(); });
    std::printf("line %s serving metrics and review on http://%s:%d\n", po.line.c_str(),
                cfg->http_host.c_str(), port);
  }
  std::printf("line %s: %zu cameras on %s version %lld\n", po.line.c_str(), cfg->sources.size(),
              po.model.c_str(), static_cast<long long>(p->Stats().version));
  std::fflush(stdout);
  std::atomic<bool> stop{false};
  std::thread adapter;
  if (cfg->adapt.enabled) {
    stream::AdaptRequest base;
    base.options = cfg->adapt;
    base.repo = cfg->repo;
    base.model = po.model;
    base.home = g.home;
    adapter = std::thread([base, s = st->get(), p, &stop] { AdaptLoop(base, s, p, &stop); });
  }
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    timespec ts{0, 200 * 1000 * 1000};
    if (sigtimedwait(&set, nullptr, &ts) > 0) break;
    if (f.duration_s > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >=
            f.duration_s) {
      break;
    }
    if (p->WaitSourcesDone(0)) break;
  }
  stop = true;
  if (adapter.joinable()) adapter.join();
  p->Stop();
  (*repo)->StopWatch();
  if (http) {
    http->stop();
    http_thread.join();
  }
  const stream::LineStats s = p->Stats();
  std::printf(
      "line %s stopped: %lld frames in = %lld decided + %lld dropped; %lld flagged; p99 %.1f ms; "
      "version %lld%s\n",
      po.line.c_str(), static_cast<long long>(s.frames_in), static_cast<long long>(s.decided),
      static_cast<long long>(s.dropped), static_cast<long long>(s.flagged), s.p99_ms,
      static_cast<long long>(s.version), s.pinned ? " (rolled back)" : "");
  for (const auto& c : s.sources) {
    if (c.state == "failed")
      std::printf("  camera %s failed: %s\n", c.name.c_str(), c.detail.c_str());
  }
  if (!f.json_out.empty()) {
    Status w = WriteFileAtomic(f.json_out, StatsJson(s).dump(2) + "\n");
    if (!w.ok()) return Fail(w);
  }
  return 0;
}

struct ReviewFlags {
  std::string model, export_dir;
  int64_t limit = 50;
  bool all = false, json = false;
};

int CmdReview(const Globals& g, const ReviewFlags& f) {
  auto st = store::StreamStore::Open(store::HomeStorePath(g.home));
  if (!st.ok()) return Fail(st.status());
  auto frames = (*st)->Review(f.model, !f.all, f.limit);
  if (!frames.ok()) return Fail(frames.status());
  if (!f.export_dir.empty()) {
    Status s = MakeDirs(f.export_dir);
    if (!s.ok()) return Fail(s);
    for (const auto& fr : *frames) {
      // PGM: the frame as the model saw it, for a person to look at.
      const std::string pgm = "P5\n" + std::to_string(fr.width) + " " + std::to_string(fr.height) +
                              "\n255\n" + fr.pixels;
      s = WriteFileAtomic(f.export_dir + "/" + std::to_string(fr.id) + ".pgm", pgm);
      if (!s.ok()) return Fail(s);
    }
  }
  if (f.json) {
    json out = json::array();
    for (const auto& fr : *frames) out.push_back(ReviewJson(fr));
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-8s %-10s %-14s %8s %-14s %6s %8s %-14s %s\n", "id", "line", "camera", "seq",
              "predicted", "conf", "score", "label", "source label");
  for (const auto& fr : *frames) {
    std::printf("%-8lld %-10s %-14s %8lld %-14s %6.3f %8.3f %-14s %s\n",
                static_cast<long long>(fr.id), fr.line.c_str(), fr.source.c_str(),
                static_cast<long long>(fr.seq), fr.predicted.c_str(), fr.confidence, fr.score,
                fr.label.empty() ? "-" : fr.label.c_str(), fr.truth.c_str());
  }
  if (frames->empty()) std::printf("no frames to review for model %s\n", f.model.c_str());
  return 0;
}

int CmdStatus(const Globals& g, bool as_json) {
  auto st = store::StreamStore::Open(store::HomeStorePath(g.home));
  if (!st.ok()) return Fail(st.status());
  auto lines = (*st)->Lines();
  if (!lines.ok()) return Fail(lines.status());
  auto releases = (*st)->Releases("");
  if (!releases.ok()) return Fail(releases.status());
  if (as_json) {
    json ls = json::array(), rs = json::array();
    for (const auto& l : *lines) {
      ls.push_back({{"line", l.line},
                    {"pid", l.pid},
                    {"host", l.host},
                    {"state", l.state},
                    {"model", l.model},
                    {"version", l.version},
                    {"pinned", l.pinned},
                    {"frames_in", l.frames_in},
                    {"frames_decided", l.frames_decided},
                    {"frames_dropped", l.frames_dropped},
                    {"novelty_rate", l.novelty_rate},
                    {"p99_ms", l.p99_ms},
                    {"detail", l.detail},
                    {"updated_at", l.updated_at}});
    }
    for (const auto& r : *releases) {
      rs.push_back({{"model", r.model},
                    {"version", r.version},
                    {"new_class", r.new_class},
                    {"status", r.status},
                    {"detail", json::parse(r.detail_json, nullptr, false)},
                    {"created_at", r.created_at}});
    }
    std::printf("%s\n", json{{"lines", ls}, {"releases", rs}}.dump(2).c_str());
    return 0;
  }
  std::printf("%-10s %-8s %-14s %8s %10s %10s %9s %8s %8s\n", "line", "state", "model", "version",
              "in", "decided", "dropped", "novelty", "p99 ms");
  for (const auto& l : *lines) {
    std::printf("%-10s %-8s %-14s %7lld%s %10lld %10lld %9lld %7.2f%% %8.1f\n", l.line.c_str(),
                l.state.c_str(), l.model.c_str(), static_cast<long long>(l.version),
                l.pinned ? "*" : " ", static_cast<long long>(l.frames_in),
                static_cast<long long>(l.frames_decided), static_cast<long long>(l.frames_dropped),
                100 * l.novelty_rate, l.p99_ms);
  }
  if (lines->empty()) std::printf("no line has reported yet\n");
  for (const auto& r : *releases) {
    std::printf("release: %s version %lld gains '%s': %s\n", r.model.c_str(),
                static_cast<long long>(r.version), r.new_class.c_str(), r.status.c_str());
  }
  return 0;
}

}  // namespace

void AddStreamCommands(CLI::App& root, CommandContext& ctx) {
  CLI::App* stream =
      root.add_subcommand("stream", "Streaming visual inspection: camera lines, review, labels");
  stream->require_subcommand(1);

  auto rf = Flags<RunFlags>();
  CLI::App* run = stream->add_subcommand("run", "Run a production line until a signal");
  run->add_option("--config", rf->config, "The line's line.toml (docs/stream.md)")
      ->required()
      ->check(CLI::ExistingFile);
  run->add_option("--duration", rf->duration_s, "Stop after SECONDS (default: at a signal)")
      ->check(CLI::NonNegativeNumber);
  run->add_option("--json", rf->json_out, "Write the line's final statistics to FILE");
  ctx.On(run, [rf](const Globals& g) { return CmdRun(g, *rf); });

  auto vf = Flags<ReviewFlags>();
  CLI::App* review = stream->add_subcommand("review", "Frames flagged as novel, to label");
  review->add_option("--model", vf->model, "The lines' model")->required();
  review->add_option("--limit", vf->limit, "At most this many, newest (default 50)")
      ->check(CLI::PositiveNumber);
  review->add_flag("--all", vf->all, "Labelled ones too");
  review->add_option("--export", vf->export_dir, "Write each frame as DIR/ID.pgm");
  review->add_flag("--json", vf->json, "JSON output");
  ctx.On(review, [vf](const Globals& g) { return CmdReview(g, *vf); });

  struct LabelFlags {
    std::string cls;
    std::vector<int64_t> ids;
  };
  auto lf = Flags<LabelFlags>();
  CLI::App* label = stream->add_subcommand("label", "Label reviewed frames with a class");
  label->add_option("--class", lf->cls, "The class (a new name teaches the lines a new class)")
      ->required();
  label->add_option("ids", lf->ids, "Frame ids from `stream review`")->required();
  ctx.On(label, [lf](const Globals& g) {
    auto st = store::StreamStore::Open(store::HomeStorePath(g.home));
    if (!st.ok()) return Fail(st.status());
    Status s = (*st)->Label(lf->ids, lf->cls);
    if (!s.ok()) return Fail(s);
    std::printf("labelled %zu frame(s) '%s'\n", lf->ids.size(), lf->cls.c_str());
    return 0;
  });

  auto jf = Flags<bool>();
  CLI::App* status = stream->add_subcommand("status", "Lines, their versions and rates; releases");
  status->add_flag("--json", *jf, "JSON output");
  ctx.On(status, [jf](const Globals& g) { return CmdStatus(g, *jf); });

  AddStreamDemoCommand(*stream, ctx);
}

}  // namespace ronghe::cli
