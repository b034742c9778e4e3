#include "ronghe/stream/config.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include "ronghe/base/config.h"
#include "ronghe/data/datasets.h"

namespace ronghe::stream {

namespace fs = std::filesystem;

namespace {

std::string Resolve(const std::string& base, const std::string& p) {
  if (p.empty() || p[0] == '/' || p.find("://") != std::string::npos) return p;
  return (fs::path(base) / p).lexically_normal().string();
}

// Image sets are loaded once per process, however many cameras replay them.
Result<std::shared_ptr<const ImageSet>> CachedSet(
    const std::string& key, const std::function<Result<std::shared_ptr<ImageSet>>()>& load) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const ImageSet>> cache;
  std::lock_guard<std::mutex> l(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ASSIGN_OR_RETURN(std::shared_ptr<ImageSet> set, load());
  cache[key] = set;
  return std::shared_ptr<const ImageSet>(set);
}

Status ReadGroup(Config& cfg, const std::string& group, const std::string& base,
                 const std::string& home, std::vector<SourceSpec>* out) {
  const std::string k = "cameras." + group + ".";
  std::string kind;
  RETURN_IF_ERROR(cfg.GetRequired(k + "kind", &kind));
  int64_t count = 1;
  double fps = 0;
  std::vector<int64_t> roi;
  RETURN_IF_ERROR(cfg.Get(k + "count", &count));
  RETURN_IF_ERROR(cfg.Get(k + "fps", &fps));
  RETURN_IF_ERROR(cfg.Get(k + "roi", &roi));
  if (count < 1 || count > 100000) return cfg.ValueError(k + "count", "must lie in 1..100000");
  if (fps < 0) return cfg.ValueError(k + "fps", "must be >= 0");
  if (!roi.empty() && roi.size() != 4)
    return cfg.ValueError(k + "roi", "want [x, y, width, height]");
  auto name_of = [&](int64_t i) {
    if (count == 1) return group;
    char buf[32];
    std::snprintf(buf, sizeof buf, "-%03lld", static_cast<long long>(i + 1));
    return group + buf;
  };
  if (kind == "video" || kind == "rtsp") {
    std::string url;
    bool loop = true;
    double timeout = 5;
    RETURN_IF_ERROR(cfg.GetRequired(k + (kind == "video" ? "path" : "url"), &url));
    RETURN_IF_ERROR(cfg.Get(k + "loop", &loop));
    RETURN_IF_ERROR(cfg.Get(k + "timeout_s", &timeout));
    VideoOptions vo;
    vo.url = kind == "video" ? Resolve(base, url) : url;
    vo.fps = fps;
    vo.loop = loop;
    vo.live = kind == "rtsp";
    vo.open_timeout_s = timeout;
    for (int64_t i = 0; i < count; ++i) {
      SourceSpec s;
      s.name = name_of(i);
      s.roi = roi;
      s.open = [vo]() { return OpenVideo(vo); };
      out->push_back(std::move(s));
    }
    return Status::OK();
  }
  if (kind != "images")
    return cfg.ValueError(k + "kind", "'" + kind + "' is not images, video or rtsp");
  std::string dataset, path, labels, split = "test", novel_class;
  int64_t tile = 0, rows_per_label = 0, limit = 0, novel_cameras = -1, seed = 1;
  double novel_after_s = 0, novel_fraction = 0.3;
  std::vector<std::string> classes;
  RETURN_IF_ERROR(cfg.Get(k + "dataset", &dataset));
  RETURN_IF_ERROR(cfg.Get(k + "path", &path));
  RETURN_IF_ERROR(cfg.Get(k + "labels", &labels));
  RETURN_IF_ERROR(cfg.Get(k + "split", &split));
  RETURN_IF_ERROR(cfg.Get(k + "tile", &tile));
  RETURN_IF_ERROR(cfg.Get(k + "rows_per_label", &rows_per_label));
  RETURN_IF_ERROR(cfg.Get(k + "limit", &limit));
  RETURN_IF_ERROR(cfg.Get(k + "seed", &seed));
  RETURN_IF_ERROR(cfg.Get(k + "classes", &classes));
  RETURN_IF_ERROR(cfg.Get(k + "novel_class", &novel_class));
  RETURN_IF_ERROR(cfg.Get(k + "novel_after_s", &novel_after_s));
  RETURN_IF_ERROR(cfg.Get(k + "novel_fraction", &novel_fraction));
  RETURN_IF_ERROR(cfg.Get(k + "novel_cameras", &novel_cameras));
  if (novel_fraction < 0 || novel_fraction > 1)
    return cfg.ValueError(k + "novel_fraction", "must lie in [0, 1]");
  Result<std::shared_ptr<const ImageSet>> set = InvalidArgument("");
  std::vector<std::string> names;
  if (dataset == "fashion-mnist") {
    RETURN_IF_ERROR(data::CheckDatasetPresent(home, dataset));
    if (split != "test" && split != "train") return cfg.ValueError(k + "split", "test or train");
    const std::string dir = data::DatasetDir(home, dataset) + "/";
    const std::string prefix = split == "test" ? "t10k" : "train";
    set = CachedSet(dir + prefix, [&] {
      return LoadIdxImages(dir + prefix + "-images-idx3-ubyte.gz",
                           dir + prefix + "-labels-idx1-ubyte.gz");
    });
    names = data::FindDataset(dataset)->classes;
  } else if (dataset == "opencv-digits") {
    RETURN_IF_ERROR(data::CheckDatasetPresent(home, "opencv"));
    const std::string png = data::DatasetDir(home, "opencv") + "/digits.png";
    set = CachedSet(png, [&] { return LoadTileSheet(png, 20, 5); });
    names = data::FindDataset("opencv")->classes;
  } else if (!dataset.empty()) {
    return cfg.ValueError(k + "dataset", "'" + dataset + "' is not fashion-mnist or opencv-digits");
  } else if (path.empty()) {
    return cfg.ValueError(k + "path", "an images camera needs dataset or path");
  } else {
    const std::string p = Resolve(base, path);
    if (tile > 0) {
      set = CachedSet(p + "#" + std::to_string(tile), [&] {
        return LoadTileSheet(p, static_cast<int>(tile), static_cast<int>(rows_per_label));
      });
    } else if (fs::is_directory(p)) {
      set = CachedSet(p, [&] { return LoadImageFolder(p); });
    } else {
      const std::string l = labels.empty() ? "" : Resolve(base, labels);
      set = CachedSet(p + "#" + l, [&] { return LoadIdxImages(p, l); });
    }
  }
  if (!set.ok()) return Status(set.status().code(), k + ": " + set.status().message());
  if (names.empty()) names = (*set)->class_names;
  auto index_of = [&](const std::string& c) -> int64_t {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == c) return static_cast<int64_t>(i);
    }
    return -1;
  };
  ReplayOptions ro;
  ro.fps = fps > 0 ? fps : 5;
  ro.limit = limit;
  ro.novel_after_s = novel_after_s;
  ro.novel_fraction = novel_fraction;
  for (const auto& c : classes) {
    const int64_t i = index_of(c);
    if (i < 0) return cfg.ValueError(k + "classes", "no class '" + c + "' in the image set");
    ro.classes.push_back(i);
  }
  int64_t novel = -1;
  if (!novel_class.empty()) {
    novel = index_of(novel_class);
    if (novel < 0) return cfg.ValueError(k + "novel_class", "no class '" + novel_class + "'");
  }
  for (int64_t i = 0; i < count; ++i) {
    SourceSpec s;
    s.name = name_of(i);
    s.roi = roi;
    s.truth_names = names;
    ReplayOptions r = ro;
    r.seed = static_cast<uint64_t>(seed) * 100003 + static_cast<uint64_t>(i);
    const bool sees_novel = novel >= 0 && (novel_cameras < 0 || i < novel_cameras);
    r.novel_class = novel;  // never shown before novel_after_s; after it, only where it appears
    if (!sees_novel) r.novel_fraction = 0;
    std::shared_ptr<const ImageSet> shared = *set;
    s.open = [shared, r]() -> Result<std::unique_ptr<FrameSource>> {
      return ReplaySource(shared, r);
    };
    out->push_back(std::move(s));
  }
  return Status::OK();
}

}  // namespace

Result<LineConfig> LoadLineConfig(const std::string& path, const std::string& home) {
  ASSIGN_OR_RETURN(Config cfg, Config::Load(path));
  const std::string base = fs::absolute(path).parent_path().string();
  LineConfig c;
  PipelineOptions& p = c.pipeline;
  p.home = home;
  RETURN_IF_ERROR(cfg.GetRequired("line.name", &p.line));
  RETURN_IF_ERROR(cfg.GetRequired("line.model", &p.model));
  RETURN_IF_ERROR(cfg.GetRequired("line.repo", &c.repo));
  c.repo = Resolve(base, c.repo);
  RETURN_IF_ERROR(cfg.Get("line.http", &c.http_port));
  RETURN_IF_ERROR(cfg.Get("line.host", &c.http_host));
  RETURN_IF_ERROR(cfg.Get("line.watch_s", &c.watch_s));
  RETURN_IF_ERROR(cfg.Get("line.hub", &c.hub));
  RETURN_IF_ERROR(cfg.Get("line.hub_version", &c.hub_version));
  c.hub = Resolve(base, c.hub);
  double max_wait_ms = static_cast<double>(p.max_wait_us) / 1000;
  RETURN_IF_ERROR(cfg.Get("batching.max_batch", &p.max_batch));
  RETURN_IF_ERROR(cfg.Get("batching.max_wait_ms", &max_wait_ms));
  RETURN_IF_ERROR(cfg.Get("batching.inference_threads", &p.inference_threads));
  RETURN_IF_ERROR(cfg.Get("batching.capture_threads", &p.capture_threads));
  p.max_wait_us = static_cast<int64_t>(max_wait_ms * 1000);
  RETURN_IF_ERROR(cfg.Get("queue.depth", &p.queue_depth));
  RETURN_IF_ERROR(cfg.Get("novelty.score", &p.novelty_score));
  RETURN_IF_ERROR(cfg.Get("novelty.false_alarm_rate", &p.false_alarm_rate));
  RETURN_IF_ERROR(cfg.Get("novelty.calibration_frames", &p.calibration_frames));
  RETURN_IF_ERROR(cfg.Get("rollback.window", &p.rollback_window));
  RETURN_IF_ERROR(cfg.Get("rollback.max_novelty_ratio", &p.max_novelty_ratio));
  RETURN_IF_ERROR(cfg.Get("rollback.max_latency_ratio", &p.max_latency_ratio));
  AdaptOptions& a = c.adapt;
  int64_t seed = static_cast<int64_t>(a.seed);
  RETURN_IF_ERROR(cfg.Get("adapt.enabled", &a.enabled));
  RETURN_IF_ERROR(cfg.Get("adapt.k", &a.k));
  RETURN_IF_ERROR(cfg.Get("adapt.holdout", &a.holdout));
  RETURN_IF_ERROR(cfg.Get("adapt.epochs", &a.epochs));
  RETURN_IF_ERROR(cfg.Get("adapt.lr", &a.lr));
  RETURN_IF_ERROR(cfg.Get("adapt.replay_per_class", &a.replay_per_class));
  RETURN_IF_ERROR(cfg.Get("adapt.max_old_drop", &a.max_old_drop));
  RETURN_IF_ERROR(cfg.Get("adapt.min_new_recall", &a.min_new_recall));
  RETURN_IF_ERROR(cfg.Get("adapt.poll_s", &a.poll_s));
  RETURN_IF_ERROR(cfg.Get("adapt.seed", &seed));
  RETURN_IF_ERROR(cfg.Get("adapt.hub", &a.hub));
  RETURN_IF_ERROR(cfg.Get("adapt.key", &a.key));
  a.hub = Resolve(base, a.hub);
  a.key = Resolve(base, a.key);
  if (!a.hub.empty() && a.key.empty()) return cfg.ValueError("adapt.key", "adapt.hub needs a key");
  a.seed = static_cast<uint64_t>(seed);
  if (p.max_batch < 1 || p.max_batch > 4096) return cfg.ValueError("batching.max_batch", "1..4096");
  if (max_wait_ms < 0) return cfg.ValueError("batching.max_wait_ms", "must be >= 0");
  if (p.queue_depth < 1 || p.queue_depth > 100000)
    return cfg.ValueError("queue.depth", "1..100000");
  if (p.novelty_score != "mahalanobis" && p.novelty_score != "energy")
    return cfg.ValueError("novelty.score", "mahalanobis or energy");
  if (!(p.false_alarm_rate > 0 && p.false_alarm_rate < 1))
    return cfg.ValueError("novelty.false_alarm_rate", "must lie in (0, 1)");
  if (a.k < 2) return cfg.ValueError("adapt.k", "must be >= 2");
  if (a.holdout < 1 || a.holdout >= a.k)
    return cfg.ValueError("adapt.holdout", "must lie in 1..k-1");
  if (c.watch_s < 0.05) return cfg.ValueError("line.watch_s", "must be >= 0.05");
  const auto groups = cfg.Keys("cameras");
  if (groups.empty()) return InvalidArgument(path + ": no [cameras.NAME] group");
  for (const auto& g : groups) RETURN_IF_ERROR(ReadGroup(cfg, g, base, home, &c.sources));
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  return c;
}

}  // namespace ronghe::stream
