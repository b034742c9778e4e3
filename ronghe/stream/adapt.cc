#include "ronghe/stream/adapt.h"

#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "ronghe/base/file.h"
#include "ronghe/data/source.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/store/run_store.h"
#include "ronghe/stream/novelty.h"
#include "ronghe/train/trainer.h"

namespace ronghe::stream {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t LatestVersion(const std::string& repo, const std::string& model) {
  int64_t best = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(repo + "/" + model, ec)) {
    const std::string n = e.path().filename().string();
    if (n.empty() || n.size() > 17 || n[0] == '0' ||
        !std::all_of(n.begin(), n.end(), [](unsigned char c) { return std::isdigit(c); })) {
      continue;
    }
    if (fs::exists(e.path() / "model.rhm", ec)) best = std::max<int64_t>(best, std::stoll(n));
  }
  return best;
}

namespace {

// The first `per_class` examples of each class in a seeded order.
at::Tensor ReplayIndex(const at::Tensor& y, int64_t classes, int64_t per_class, uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor order = torch::randperm(y.size(0), torch::kLong);
  at::Tensor ys = y.index_select(0, order);
  std::vector<int64_t> pick;
  std::vector<int64_t> taken(static_cast<size_t>(classes), 0);
  const int64_t* yp = ys.data_ptr<int64_t>();
  const int64_t* op = order.data_ptr<int64_t>();
  for (int64_t i = 0; i < ys.size(0); ++i) {
    const int64_t c = yp[i];
    if (c >= 0 && c < classes && taken[static_cast<size_t>(c)] < per_class) {
      ++taken[static_cast<size_t>(c)];
      pick.push_back(op[i]);
    }
  }
  return torch::tensor(pick, torch::kLong);
}

// Frames (model-size grey) as normalised inputs [N, 1, H, W].
at::Tensor Inputs(const std::vector<store::ReviewFrame>& frames, const json& prep, int64_t h,
                  int64_t w) {
  const double scale = prep.value("scale", 1.0 / 255), mean = prep.value("mean", 0.0),
               sd = prep.value("std", 1.0);
  at::Tensor x = torch::empty({static_cast<int64_t>(frames.size()), 1, h, w}, torch::kFloat);
  float* p = x.data_ptr<float>();
  for (const auto& f : frames) {
    for (int64_t i = 0; i < h * w; ++i) {
      *p++ = static_cast<float>(
          (static_cast<uint8_t>(f.pixels[static_cast<size_t>(i)]) * scale - mean) / sd);
    }
  }
  return x;
}

// Each frame and its shifts by one and two pixels in the four directions (the background value
// fills in): nine views of few frames.
at::Tensor Shifted(const at::Tensor& x, float background) {
  std::vector<at::Tensor> views = {x};
  for (int64_t d : {1, 2}) {
    for (auto [dy, dx] : {std::pair<int64_t, int64_t>{d, 0}, {-d, 0}, {0, d}, {0, -d}}) {
      at::Tensor v = torch::roll(x, {dy, dx}, {2, 3});
      const int64_t h = x.size(2), w = x.size(3);
      if (dy > 0) v.narrow(2, 0, dy).fill_(background);
      if (dy < 0) v.narrow(2, h + dy, -dy).fill_(background);
      if (dx > 0) v.narrow(3, 0, dx).fill_(background);
      if (dx < 0) v.narrow(3, w + dx, -dx).fill_(background);
      views.push_back(v);
    }
  }
  return torch::cat(views, 0);
}

double Accuracy(nn::Model& m, const at::Tensor& x, const at::Tensor& y) {
  torch::NoGradGuard g;
  m.SetTraining(false);
  int64_t right = 0;
  for (int64_t i = 0; i < x.size(0); i += 1024) {
    const int64_t n = std::min<int64_t>(1024, x.size(0) - i);
    at::Tensor pred = m.Forward(x.narrow(0, i, n)).argmax(1);
    right += pred.eq(y.narrow(0, i, n)).sum().item<int64_t>();
  }
  return x.size(0) ? static_cast<double>(right) / static_cast<double>(x.size(0)) : 0;
}

}  // namespace

Result<AdaptResult> Adapt(const AdaptRequest& r) {
  const auto t0 = std::chrono::steady_clock::now();
  const AdaptOptions& o = r.options;
  AdaptResult out;
  out.new_class = r.new_class;
  out.parent_version = LatestVersion(r.repo, r.model);
  if (out.parent_version == 0) return NotFound(r.repo + "/" + r.model + ": no version to adapt");
  const std::string parent_dir = r.repo + "/" + r.model + "/" + std::to_string(out.parent_version);
  ASSIGN_OR_RETURN(nn::LoadedArtifact parent, nn::LoadArtifact(parent_dir + "/model.rhm"));
  const json& man = parent.manifest;
  const auto classes = man.value("classes", std::vector<std::string>{});
  const int64_t n = static_cast<int64_t>(classes.size());
  if (man.value("task", "") != "multiclass" || n < 2) {
    return InvalidArgument(parent_dir + ": only a multi-class model gains a class");
  }
  if (std::find(classes.begin(), classes.end(), r.new_class) != classes.end()) {
    return InvalidArgument("'" + r.new_class + "' is already a class of " + r.model);
  }
  if (static_cast<int64_t>(r.frames.size()) < o.k) {
    return FailedPrecondition(std::to_string(r.frames.size()) + " labelled frames of '" +
                              r.new_class + "', adaptation needs " + std::to_string(o.k));
  }
  ASSIGN_OR_RETURN(nn::ModelConfig mc, nn::ModelConfig::FromJson(man.at("model")));
  if (mc.input_shape.size() != 3) return InvalidArgument(parent_dir + ": not an image model");
  const int64_t h = mc.input_shape[1], w = mc.input_shape[2];
  for (const auto& f : r.frames) {
    if (f.height != h || f.width != w || static_cast<int64_t>(f.pixels.size()) != h * w) {
      return InvalidArgument("review frame " + std::to_string(f.id) + " is " +
                             std::to_string(f.width) + "x" + std::to_string(f.height) +
                             ", the model takes " + std::to_string(w) + "x" + std::to_string(h));
    }
  }
  ASSIGN_OR_RETURN(data::DataOptions dopt, data::DataOptions::FromJson(man.at("data")));
  ASSIGN_OR_RETURN(data::LoadedData d, data::LoadData(dopt, r.home, &man.at("preprocessing")));
  if (d.num_classes != n) {
    return DataLoss(parent_dir + ": the manifest's data set has " + std::to_string(d.num_classes) +
                    " classes, the model " + std::to_string(n));
  }
  const json& prep = man.at("preprocessing");

  // The new class's frames: the first K - holdout train, the last `holdout` are kept aside.
  std::vector<store::ReviewFrame> frames(r.frames.begin(), r.frames.begin() + o.k);
  const int64_t held = o.holdout;
  std::vector<store::ReviewFrame> train_frames(frames.begin(), frames.end() - held);
  std::vector<store::ReviewFrame> held_frames(frames.end() - held, frames.end());
  const float background =
      static_cast<float>((0 - prep.value("mean", 0.0)) / prep.value("std", 1.0));
  at::Tensor new_x = Shifted(Inputs(train_frames, prep, h, w), background);
  at::Tensor held_x = Inputs(held_frames, prep, h, w);
  out.train_frames = static_cast<int64_t>(train_frames.size());
  out.holdout_frames = held;

  at::Tensor ri = ReplayIndex(d.train.y, n, o.replay_per_class, o.seed);
  at::Tensor vi =
      ReplayIndex(d.val.y, n, std::max<int64_t>(20, o.replay_per_class / 4), o.seed + 1);
  // The new class weighs as much as one replayed class: its views are repeated up to that size.
  const int64_t reps =
      std::max<int64_t>(1, o.replay_per_class / std::max<int64_t>(1, new_x.size(0)));
  at::Tensor nx = new_x.repeat({reps, 1, 1, 1});
  data::LoadedData ad;
  ad.task = data::Task::kMulticlass;
  ad.num_classes = n + 1;
  ad.input_shape = mc.input_shape;
  ad.class_names = classes;
  ad.class_names.push_back(r.new_class);
  ad.preprocessing = prep;
  ad.data_sha256 = d.data_sha256;
  ad.train = {
      torch::cat({d.train.x.index_select(0, ri), nx}, 0),
      torch::cat({d.train.y.index_select(0, ri), torch::full({nx.size(0)}, n, torch::kLong)}, 0)};
  ad.val = {torch::cat({d.val.x.index_select(0, vi), held_x}, 0),
            torch::cat({d.val.y.index_select(0, vi), torch::full({held}, n, torch::kLong)}, 0)};
  ad.test = {d.test.x, d.test.y};

  // The model with one more output; everything but the output layer copied and frozen.
  nn::ModelConfig grown = mc;
  grown.outputs = n + 1;
  ASSIGN_OR_RETURN(auto model, nn::Model::Create(grown));
  auto old_state = parent.model->NamedState();
  auto new_state = model->NamedState();
  std::vector<std::string> head;
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < new_state.size(); ++i) {
      const at::Tensor& src = old_state[i].second;
      at::Tensor dst = new_state[i].second;
      if (src.sizes() == dst.sizes()) {
        dst.copy_(src);
      } else if (src.dim() >= 1 && src.size(0) == n && dst.size(0) == n + 1) {
        dst.narrow(0, 0, n).copy_(src);
        head.push_back(new_state[i].first);
      } else {
        return Internal("adaptation: " + new_state[i].first + " does not fit the grown model");
      }
    }
  }
  if (head.empty()) return Internal("adaptation: no output layer found");
  for (auto& [name, t] : new_state) {
    if (!t.requires_grad()) continue;
    if (std::find(head.begin(), head.end(), name) == head.end()) {
      t.requires_grad_(false);
    } else {
      // Only the new class's row learns: the known classes' rows keep their gradients at zero,
      // so their logits (and so their decisions among themselves) stay exactly the parent's.
      t.register_hook([n](at::Tensor grad) {
        grad = grad.clone();
        grad.narrow(0, 0, n).zero_();
        return grad;
      });
    }
  }
  out.old_accuracy_before = Accuracy(*parent.model, d.test.x, d.test.y);

  ASSIGN_OR_RETURN(auto runs, store::OpenHomeStore(r.home));
  json cfg = {{"kind", "stream-adapt"},
              {"model", r.model},
              {"parent_version", out.parent_version},
              {"new_class", r.new_class},
              {"k", o.k},
              {"holdout", o.holdout},
              {"epochs", o.epochs},
              {"lr", o.lr},
              {"replay_per_class", o.replay_per_class},
              {"review_frames", [&] {
                 json ids = json::array();
                 for (const auto& f : frames) ids.push_back(f.id);
                 return ids;
               }()}};
  ASSIGN_OR_RETURN(auto job, store::Job::Start(runs.get(), "adapt", r.model, cfg.dump()));
  out.run_id = job->id();
  train::TrainOptions to;
  to.epochs = o.epochs;
  to.lr = o.lr;
  to.batch_size = 64;
  to.seed = o.seed;
  to.progress = "off";
  to.threads = 0;
  auto result = [&]() -> Result<train::TrainResult> {
    ASSIGN_OR_RETURN(auto trainer, train::Trainer::Create(to, model.get(), &ad, job.get(), ""));
    return trainer->Run(false);
  }();
  if (!result.ok()) {
    (void)job->Finish(result.status());
    return result.status();
  }
  // The frozen backbone's batch-norm statistics moved with the training batches: back to the
  // parent's, which the old classes' accuracy was measured with.
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < new_state.size(); ++i) {
      if (std::find(head.begin(), head.end(), new_state[i].first) == head.end()) {
        new_state[i].second.copy_(old_state[i].second);
      }
    }
  }
  // The new class's bias, lowered on validation data until the known classes lose at most three
  // quarters of the allowed accuracy there (the rest is the margin for what validation does not
  // see): a class learnt from ten frames tends to claim its neighbours' frames (sneakers as boots),
  // and the margin is chosen where it can be measured, not on test.
  {
    torch::NoGradGuard g;
    model->SetTraining(false);
    parent.model->SetTraining(false);
    std::vector<at::Tensor> ls;
    int64_t parent_right = 0;
    for (int64_t i = 0; i < d.val.x.size(0); i += 1024) {
      const int64_t m = std::min<int64_t>(1024, d.val.x.size(0) - i);
      at::Tensor x = d.val.x.narrow(0, i, m);
      ls.push_back(model->Forward(x));
      parent_right +=
          parent.model->Forward(x).argmax(1).eq(d.val.y.narrow(0, i, m)).sum().item<int64_t>();
    }
    at::Tensor logits = torch::cat(ls, 0);
    const double nval = static_cast<double>(std::max<int64_t>(1, d.val.x.size(0)));
    const double parent_acc = static_cast<double>(parent_right) / nval;
    at::Tensor old_best = std::get<0>(logits.narrow(1, 0, n).max(1));
    at::Tensor old_arg = std::get<1>(logits.narrow(1, 0, n).max(1));
    at::Tensor newl = logits.select(1, n);
    double offset = 0;
    for (; offset > -30; offset -= 0.25) {
      at::Tensor pred =
          torch::where(newl + offset > old_best, torch::full_like(old_arg, n), old_arg);
      const double acc = pred.eq(d.val.y).to(torch::kDouble).mean().item<double>();
      if (parent_acc - acc <= 0.75 * o.max_old_drop) break;
    }
    for (auto& [name, t] : new_state) {
      if (t.dim() == 1 && t.size(0) == n + 1 &&
          std::find(head.begin(), head.end(), name) != head.end()) {
        t[n] += offset;
      }
    }
    out.bias_offset = offset;
  }
  out.old_accuracy_after = Accuracy(*model, d.test.x, d.test.y);
  out.new_recall = Accuracy(*model, held_x, torch::full({held}, n, torch::kLong));
  const double drop = out.old_accuracy_before - out.old_accuracy_after;
  char why[256] = {0};
  if (drop > o.max_old_drop) {
    std::snprintf(why, sizeof why, "old classes' accuracy drops %.4f (%.4f -> %.4f), above %.4f",
                  drop, out.old_accuracy_before, out.old_accuracy_after, o.max_old_drop);
  } else if (out.new_recall < o.min_new_recall) {
    std::snprintf(why, sizeof why, "new class recall %.3f on %lld held-out frames, below %.3f",
                  out.new_recall, static_cast<long long>(held), o.min_new_recall);
  }
  out.reason = why;
  out.released = out.reason.empty();
  (void)job->Metrics({{0, "test", "old_accuracy_before", out.old_accuracy_before},
                      {0, "test", "old_accuracy_after", out.old_accuracy_after},
                      {0, "holdout", "new_recall", out.new_recall}});

  json detail = {{"parent_version", out.parent_version},
                 {"new_class_bias_offset", out.bias_offset},
                 {"old_accuracy_before", out.old_accuracy_before},
                 {"old_accuracy_after", out.old_accuracy_after},
                 {"new_recall", out.new_recall},
                 {"train_frames", out.train_frames},
                 {"holdout_frames", out.holdout_frames},
                 {"run_id", out.run_id},
                 {"reason", out.reason}};
  if (out.released) {
    json m = man;
    m["classes"] = ad.class_names;
    m["model"] = grown.ToJson();
    m["metrics"] = {{"test", {{"accuracy_old_classes", out.old_accuracy_after}}},
                    {"holdout", {{"new_class_recall", out.new_recall}}}};
    m["adaptation"] = detail;
    m["adaptation"]["new_class"] = r.new_class;
    // The new class's place among the embeddings, for the lines' novelty score: the training
    // data's classes from the replayed frames, the new one from its labelled views.
    auto stats = NoveltyStatistics(*model, ad.train);
    if (!stats.ok()) {
      (void)job->Finish(stats.status());
      return stats.status();
    }
    m["novelty"] = *stats;
    m["run_id"] = out.run_id;
    const std::string model_dir = r.repo + "/" + r.model;
    const int64_t next = LatestVersion(r.repo, r.model) + 1;
    const std::string staging =
        r.repo + "/.stream-staging/" + r.model + "-" + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(staging, ec);
    Status st = MakeDirs(staging);
    if (st.ok()) st = nn::SaveArtifact(staging + "/model.rhm", *model, m);
    int64_t version = next;
    if (st.ok() && r.release) {
      auto v = r.release(staging + "/model.rhm", out);
      if (v.ok()) {
        version = *v;
      } else {
        st = v.status();
      }
    } else if (st.ok()) {
      fs::rename(staging, model_dir + "/" + std::to_string(next), ec);
      if (ec) st = Unavailable(model_dir + "/" + std::to_string(next) + ": " + ec.message());
    }
    fs::remove_all(staging, ec);
    fs::remove(r.repo + "/.stream-staging", ec);
    if (!st.ok()) {
      (void)job->Finish(st);
      return st;
    }
    out.version = version;
    (void)job->Artifact({"model", model_dir + "/" + std::to_string(version) + "/model.rhm", "", 0});
  }
  (void)job->Finish(Status::OK());
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace ronghe::stream
