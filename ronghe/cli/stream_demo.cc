// `ronghe stream demo [--quick] --json FILE`: production lines as processes, each replaying its
// cameras from Fashion-MNIST's test set with the model of examples/inspection/ (nine classes;
// "Ankle boot" held out). After a while the held-out class starts to appear on half of each
// line's cameras. The lines flag what they do not know; this process plays the person at the
// review queue, labelling flagged frames from the data set's own labels; the first line adapts
// once K frames of the new class are labelled and releases a new version to the repository, which
// every line follows. The demo prints the timeline, the new class's recall, the old classes'
// accuracy before and after, and each line's frame accounting, and writes them as JSON.
#include "ronghe/cli/stream_demo.h"

#include <ATen/ATen.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/base/subprocess.h"
#include "ronghe/cli/hub_deploy.h"
#include "ronghe/data/source.h"
#include "ronghe/hub/hub.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/nn/model.h"
#include "ronghe/store/run_store.h"
#include "ronghe/store/stream_store.h"
#include "ronghe/stream/adapt.h"

namespace ronghe::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct DemoFlags {
  bool quick = false;
  bool no_hub = false;
  std::string json_out;
  std::string examples = RONGHE_SOURCE_DIR "/examples/inspection";
  std::string work;
  int lines = 0;              // 0 = 4 (quick: 2)
  int cameras = 0;            // per line; 0 = 50 (quick: 20)
  double novel_after_s = -1;  // -1 = 60 (quick: 15)
};

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The released model's recall of the new class on the data set's own test frames of it.
Result<double> NewClassRecall(const std::string& artifact, const std::string& home,
                              const std::string& cls) {
  ASSIGN_OR_RETURN(nn::LoadedArtifact a, nn::LoadArtifact(artifact));
  ASSIGN_OR_RETURN(data::DataOptions o, data::DataOptions::FromJson(a.manifest.at("data")));
  o.holdout_classes.clear();
  ASSIGN_OR_RETURN(data::LoadedData d, data::LoadData(o, home, &a.manifest.at("preprocessing")));
  const auto& all = d.class_names;
  const auto classes = a.manifest.value("classes", std::vector<std::string>{});
  const int64_t in_data = std::find(all.begin(), all.end(), cls) - all.begin();
  const int64_t in_model = std::find(classes.begin(), classes.end(), cls) - classes.begin();
  if (in_data >= static_cast<int64_t>(all.size()) ||
      in_model >= static_cast<int64_t>(classes.size())) {
    return NotFound("class '" + cls + "' is not in the data set and the model both");
  }
  at::Tensor idx = d.test.y.eq(in_data).nonzero().squeeze(1);
  at::Tensor x = d.test.x.index_select(0, idx);
  c10::InferenceMode guard;
  a.model->SetTraining(false);
  at::Tensor pred = a.model->Forward(x).argmax(1);
  return pred.eq(in_model).to(at::kDouble).mean().item<double>();
}

std::string LineToml(const DemoFlags& f, int i, int cameras, double novel_after_s,
                     const std::string& repo, const std::string& work) {
  std::string t = "# Written by `ronghe stream demo`.\n[line]\nname = \"line-" +
                  std::to_string(i + 1) + "\"\nmodel = \"parts\"\nrepo = \"" + repo +
                  "\"\nwatch_s = 0.5\n\n[batching]\nmax_batch = 64\nmax_wait_ms = 20\n\n"
                  "[queue]\ndepth = 4\n\n[novelty]\nfalse_alarm_rate = 0.01\n"
                  "calibration_frames = 3000\n\n";
  if (i == 0) {
    t += "[adapt]\nenabled = true\nk = 10\nholdout = 3\nepochs = " +
         std::string(f.quick ? "12" : "20") + "\nreplay_per_class = 200\npoll_s = 0.5\n";
    if (!f.no_hub) t += "hub = \"" + work + "/hub\"\nkey = \"" + work + "/keys/hub.key\"\n";
    t += "\n";
  }
  char cams[512];
  std::snprintf(cams, sizeof cams,
                "[cameras.cam%d]\nkind = \"images\"\ndataset = \"fashion-mnist\"\nsplit = "
                "\"test\"\ncount = %d\nfps = 5\nseed = %d\nnovel_class = \"Ankle boot\"\n"
                "novel_after_s = %g\nnovel_fraction = 0.2\nnovel_cameras = %d\n",
                i + 1, cameras, i + 1, novel_after_s, cameras / 2);
  return t + cams;
}

// The fleet's models ship through a hub: a hub with one key (root, publisher), the example model
// published as parts@1.0.0 and deployed into a repository that requires signed models. Line 1
// publishes what it learns to the same hub and deploys it from there.
Status ShipThroughHub(const std::string& home, const std::string& examples,
                      const std::string& work) {
  ASSIGN_OR_RETURN(hub::SigningKey key, hub::SigningKey::Generate());
  RETURN_IF_ERROR(key.WritePair(work + "/keys"));
  RETURN_IF_ERROR(hub::InitHub(work + "/hub", key, {}));
  const std::string card = work + "/parts-card.md";
  RETURN_IF_ERROR(WriteFileAtomic(
      card,
      "# parts 1.0.0\n\nThe inspection lines' classifier: nine of Fashion-MNIST's classes "
      "as defect classes, 'Ankle boot' held out (examples/inspection).\n"));
  const std::string model = examples + "/repo/parts/1/model.rhm";
  ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(model));
  hub::PublishRequest p;
  p.model_path = model;
  p.card_path = card;
  p.name = "parts";
  p.version = "1.0.0";
  p.provenance = {{"artifact", {{"sha256", sha}, {"bytes", fs::file_size(model)}}}};
  RETURN_IF_ERROR(hub::Publish(work + "/hub", p, key));
  const std::string repo = work + "/repo";
  RETURN_IF_ERROR(MakeDirs(repo + "/parts"));
  std::error_code ec;
  fs::copy_file(examples + "/repo/parts/config.toml", repo + "/parts/config.toml", ec);
  if (ec) return NotFound(examples + "/repo/parts/config.toml: " + ec.message());
  fs::copy_file(work + "/hub/metadata/1.root.json", repo + "/hub-root.json", ec);
  if (ec) return Unavailable(repo + "/hub-root.json: " + ec.message());
  RETURN_IF_ERROR(WriteFileAtomic(
      repo + "/repository.toml",
      "# Written by `ronghe stream demo`: every version the lines load is one the hub signed.\n"
      "[policy]\nrequire = \"signed\"\ntrusted_roots = [\"hub-root.json\"]\n"));
  Globals g;
  g.home = home;
  HubDeployRequest d;
  d.hub = work + "/hub";
  d.ref = "parts@1.0.0";
  d.repo = repo;
  d.as = "parts";
  return DeployFromHub(g, d).status();
}

int RunDemo(const Globals& g, const DemoFlags& f) {
  const int nlines = f.lines > 0 ? f.lines : (f.quick ? 2 : 4);
  const int cameras = f.cameras > 0 ? f.cameras : (f.quick ? 20 : 50);
  const double novel_after = f.novel_after_s >= 0 ? f.novel_after_s : (f.quick ? 15 : 60);
  const double timeout_s = f.quick ? 170 : 600;
  const std::string new_class = "Ankle boot";
  const int64_t k = 10;
  const std::string work = f.work.empty() ? g.home + "/stream-demo" : f.work;
  std::error_code ec;
  fs::remove_all(work, ec);
  // The lines get a home of their own (a fresh store), sharing this home's data sets.
  const std::string home = work + "/home";
  Status st = MakeDirs(home);
  if (!st.ok()) return Fail(st);
  fs::create_directory_symlink(fs::absolute(g.home + "/data"), home + "/data", ec);
  if (ec) return Fail(Unavailable(home + "/data: " + ec.message()));
  const std::string repo = work + "/repo";
  if (f.no_hub) {
    fs::copy(f.examples + "/repo", repo, fs::copy_options::recursive, ec);
    if (ec) return Fail(NotFound(f.examples + "/repo: " + ec.message()));
  } else {
    st = ShipThroughHub(home, f.examples, work);
    if (!st.ok()) return Fail(st);
  }
  auto store = store::StreamStore::Open(store::HomeStorePath(home));
  if (!store.ok()) return Fail(store.status());
  store::StreamStore* s = store->get();

  std::printf(
      "stream demo: %d lines x %d cameras at 5 fps (%d frames/s), model parts (9 classes), "
      "'%s' appears on half the cameras after %.0f s\n",
      nlines, cameras, nlines * cameras * 5, new_class.c_str(), novel_after);
  std::fflush(stdout);
  const auto t0 = Clock::now();
  std::vector<Subprocess> procs;
  for (int i = 0; i < nlines; ++i) {
    const std::string cfg = work + "/line-" + std::to_string(i + 1) + ".toml";
    st = WriteFileAtomic(cfg, LineToml(f, i, cameras, novel_after, repo, work));
    if (!st.ok()) return Fail(st);
    SpawnOptions o;
    o.argv = {"/proc/self/exe",
              "--home",
              home,
              "stream",
              "run",
              "--config",
              cfg,
              "--json",
              work + "/line-" + std::to_string(i + 1) + ".json"};
    o.stdout_path = work + "/line-" + std::to_string(i + 1) + ".log";
    o.stderr_path = o.stdout_path;
    auto p = Subprocess::Spawn(o);
    if (!p.ok()) return Fail(p.status());
    procs.push_back(std::move(p).value());
  }
  auto stop_all = [&] {
    for (auto& p : procs) p.Signal(SIGTERM);
    for (auto& p : procs) (void)p.Wait(60);
  };

  // The person at the review queue: every flagged frame labelled with what it really shows.
  double first_sighting = -1, kth_label = -1, released_at = -1, all_lines_at = -1;
  int64_t released_version = 0;
  int64_t new_labels = 0;
  json release_detail;
  std::string failure;
  while (Since(t0) < timeout_s) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    for (size_t i = 0; i < procs.size(); ++i) {
      if (auto e = procs[i].Poll()) {
        failure = "line-" + std::to_string(i + 1) + " " + e->Describe() + " (log: " + work +
                  "/line-" + std::to_string(i + 1) + ".log)";
      }
    }
    if (!failure.empty()) break;
    auto review = s->Review("parts", true, 5000);
    if (review.ok()) {
      std::map<std::string, std::vector<int64_t>> by;
      for (const auto& fr : *review) {
        if (fr.truth.empty()) continue;
        if (fr.truth == new_class && first_sighting < 0) first_sighting = Since(t0);
        // Only until the new class is learnt: labels after it change nothing in this demo.
        if (fr.truth == new_class && new_labels >= k) continue;
        by[fr.truth].push_back(fr.id);
        if (fr.truth == new_class) ++new_labels;
      }
      for (const auto& [cls, ids] : by) (void)s->Label(ids, cls);
      if (kth_label < 0 && new_labels >= k) {
        kth_label = Since(t0);
        std::printf("[%6.1f s] %lld frames of '%s' labelled: adaptation starts on line-1\n",
                    kth_label, static_cast<long long>(k), new_class.c_str());
        std::fflush(stdout);
      }
    }
    if (kth_label >= 0 && released_at < 0) {
      auto rel = s->Releases("parts");
      if (rel.ok()) {
        for (const auto& r : *rel) {
          if (r.status == "released") {
            released_at = Since(t0);
            released_version = r.version;
            release_detail = json::parse(r.detail_json, nullptr, false);
            std::printf("[%6.1f s] version %lld released (old-class accuracy %.4f -> %.4f)\n",
                        released_at, static_cast<long long>(r.version),
                        release_detail.value("old_accuracy_before", 0.0),
                        release_detail.value("old_accuracy_after", 0.0));
            std::fflush(stdout);
          } else {
            failure = "adaptation " + r.status + ": " + r.detail_json;
          }
        }
      }
      if (!failure.empty()) break;
    }
    if (released_at >= 0 && all_lines_at < 0) {
      auto lines = s->Lines();
      if (lines.ok() && static_cast<int>(lines->size()) == nlines) {
        bool all = true;
        for (const auto& l : *lines) all = all && l.version == released_version;
        if (all) {
          all_lines_at = Since(t0);
          std::printf("[%6.1f s] every line runs version %lld\n", all_lines_at,
                      static_cast<long long>(released_version));
          std::fflush(stdout);
        }
      }
    }
    // A little longer on the new version, then the lines stop.
    if (all_lines_at >= 0 && Since(t0) > all_lines_at + (f.quick ? 5 : 20)) break;
  }
  stop_all();
  if (!failure.empty()) return Fail(Unavailable("stream demo: " + failure));
  if (all_lines_at < 0) {
    return Fail(DeadlineExceeded("stream demo: not every line ran a released version within " +
                                 std::to_string(static_cast<int>(timeout_s)) +
                                 " s (first sighting " + std::to_string(first_sighting) +
                                 " s, K-th label " + std::to_string(kth_label) + " s, release " +
                                 std::to_string(released_at) + " s); logs in " + work));
  }
  json per_line = json::object();
  int64_t in = 0, decided = 0, dropped = 0;
  double p99 = 0;
  for (int i = 0; i < nlines; ++i) {
    const std::string name = "line-" + std::to_string(i + 1);
    auto text = ReadFile(work + "/" + name + ".json");
    if (!text.ok()) return Fail(DataLoss(name + " left no statistics: " + text.status().message()));
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded()) return Fail(DataLoss(name + ".json is not JSON"));
    per_line[name] = {{"frames_in", j["frames_in"]},
                      {"frames_decided", j["frames_decided"]},
                      {"frames_dropped", j["frames_dropped"]},
                      {"flagged", j["flagged"]},
                      {"version", j["version"]},
                      {"p99_capture_to_decision_ms", j["p99_ms"]}};
    in += j["frames_in"].get<int64_t>();
    decided += j["frames_decided"].get<int64_t>();
    dropped += j["frames_dropped"].get<int64_t>();
    p99 = std::max(p99, j["p99_ms"].get<double>());
  }
  auto recall = NewClassRecall(repo + "/parts/" + std::to_string(released_version) + "/model.rhm",
                               home, new_class);
  if (!recall.ok()) return Fail(recall.status());
  json out = {{"lines", nlines},
              {"cameras", nlines * cameras},
              {"frames_in", in},
              {"frames_decided", decided},
              {"frames_dropped", dropped},
              {"per_line", per_line},
              {"new_class", new_class},
              {"new_class_recall", *recall},
              {"old_accuracy_before", release_detail.value("old_accuracy_before", 0.0)},
              {"old_accuracy_after", release_detail.value("old_accuracy_after", 0.0)},
              {"seconds_label_to_all_lines", all_lines_at - kth_label},
              {"p99_capture_to_decision_ms", p99},
              {"released_version", released_version},
              {"timeline",
               {{"novel_class_appears_s", novel_after},
                {"first_sighting_s", first_sighting},
                {"kth_label_s", kth_label},
                {"released_s", released_at},
                {"all_lines_s", all_lines_at}}},
              {"adaptation", release_detail}};
  std::printf(
      "\ntimeline: '%s' appears at %.0f s, first flagged at %.1f s, %lld labelled at "
      "%.1f s, released at %.1f s, every line on it at %.1f s: %.1f s from the K-th "
      "label\n",
      new_class.c_str(), novel_after, first_sighting, static_cast<long long>(k), kth_label,
      released_at, all_lines_at, all_lines_at - kth_label);
  std::printf("new class recall %.3f on its %s test frames; old classes' accuracy %.4f -> %.4f\n",
              *recall, new_class.c_str(), out["old_accuracy_before"].get<double>(),
              out["old_accuracy_after"].get<double>());
  std::printf("%-8s %10s %10s %9s %8s %8s\n", "line", "in", "decided", "dropped", "version",
              "p99 ms");
  for (auto it = per_line.begin(); it != per_line.end(); ++it) {
    const json& l = it.value();
    std::printf("%-8s %10lld %10lld %9lld %8lld %8.1f\n", it.key().c_str(),
                static_cast<long long>(l["frames_in"].get<int64_t>()),
                static_cast<long long>(l["frames_decided"].get<int64_t>()),
                static_cast<long long>(l["frames_dropped"].get<int64_t>()),
                static_cast<long long>(l["version"].get<int64_t>()),
                l["p99_capture_to_decision_ms"].get<double>());
  }
  std::printf("all      %10lld %10lld %9lld   (in = decided + dropped on every line)\n",
              static_cast<long long>(in), static_cast<long long>(decided),
              static_cast<long long>(dropped));
  if (!f.json_out.empty()) {
    st = WriteFileAtomic(f.json_out, out.dump(2) + "\n");
    if (!st.ok()) return Fail(st);
  }
  return 0;
}

}  // namespace

void AddStreamDemoCommand(CLI::App& stream, CommandContext& ctx) {
  auto f = Flags<DemoFlags>();
  CLI::App* demo = stream.add_subcommand(
      "demo", "The inspection example end to end: lines as processes, a new defect learnt");
  demo->add_flag("--quick", f->quick, "2 lines x 20 cameras, the new class after 15 s");
  demo->add_option("--json", f->json_out, "Write the results to FILE");
  demo->add_flag("--no-hub", f->no_hub,
                 "Release into the repository directly instead of through a hub of signed models");
  demo->add_option("--lines", f->lines, "Lines (processes); default 4, quick 2")
      ->check(CLI::Range(1, 64));
  demo->add_option("--cameras", f->cameras, "Cameras per line; default 50, quick 20")
      ->check(CLI::Range(2, 10000));
  demo->add_option("--novel-after", f->novel_after_s,
                   "Seconds before the new class appears; default 60, quick 15")
      ->check(CLI::NonNegativeNumber);
  demo->add_option("--examples", f->examples, "The examples/inspection folder");
  demo->add_option("--work", f->work, "Working folder (default $RONGHE_HOME/stream-demo)");
  ctx.On(demo, [f](const Globals& g) { return RunDemo(g, *f); });
}

}  // namespace ronghe::cli
