// The measurements of `ronghe fed demo` (demo.h).
#include "ronghe/fed/demo.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "ronghe/base/config.h"
#include "ronghe/data/source.h"
#include "ronghe/data/split.h"
#include "ronghe/fed/local_train.h"
#include "ronghe/fed/wire.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/nn/tensor_file.h"
#include "ronghe/store/run_store.h"
#include "ronghe/train/metrics.h"

namespace ronghe::fed {

namespace {

std::vector<float> Scores(nn::Model& m, const data::TensorData& d) {
  torch::NoGradGuard g;
  m.SetTraining(false);
  at::Tensor p = torch::sigmoid(m.Forward(d.x).squeeze(1)).contiguous();
  return std::vector<float>(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
}

std::vector<int64_t> Labels(const data::TensorData& d) {
  at::Tensor y = d.y.contiguous();
  return std::vector<int64_t>(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel());
}

DemoModelMetrics Measure(nn::Model& m, const data::LoadedData& d) {
  DemoModelMetrics r;
  auto vs = Scores(m, d.val);
  auto vy = Labels(d.val);
  std::vector<float> neg;
  for (size_t i = 0; i < vs.size(); ++i)
    if (vy[i] == 0) neg.push_back(vs[i]);
  std::sort(neg.begin(), neg.end());
  float thr = neg.empty()
                  ? 0.5f
                  : neg[static_cast<size_t>(std::floor((1 - kDemoTargetFpr) * (neg.size() - 1)))];
  auto ts = Scores(m, d.test);
  auto ty = Labels(d.test);
  int64_t tp = 0, p = 0, fp = 0, n = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    bool flag = ts[i] > thr;
    if (ty[i] == 1)
      ++p, tp += flag;
    else
      ++n, fp += flag;
  }
  r.recall = p ? static_cast<double>(tp) / p : 0;
  r.fpr = n ? static_cast<double>(fp) / n : 0;
  r.roc_auc = train::RocAuc(ts, ty);
  r.pr_auc = train::AveragePrecision(ts, ty);
  return r;
}

// The largest |secure - plaintext| weight difference after round `round` (both runs keep every
// round's checkpoint).
Result<double> RoundDifference(store::RunStore& store, int64_t secure_run, int64_t plain_run,
                               int64_t round) {
  std::vector<std::vector<float>> w;
  for (int64_t id : {secure_run, plain_run}) {
    ASSIGN_OR_RETURN(auto cp, store.GetCheckpoint(id, round));
    if (!cp) {
      return Internal("run " + std::to_string(id) + " kept no checkpoint of round " +
                      std::to_string(round));
    }
    ASSIGN_OR_RETURN(nn::TensorFile f, nn::DecodeTensorFile(cp->state, "round checkpoint"));
    ASSIGN_OR_RETURN(at::Tensor t, f.Get("weights"));
    w.emplace_back(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  double diff = 0;
  for (size_t i = 0; i < w[0].size() && i < w[1].size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(w[0][i]) - w[1][i]));
  }
  return diff;
}

// Local-only: each bank trains the same model alone for as many epochs as the federation ran.
Result<std::vector<DemoModelMetrics>> LocalOnly(const DemoEvaluationRequest& req, Config& fcfg,
                                                const data::LoadedData& all,
                                                const nn::ModelConfig& model_config) {
  std::string grouping;
  RETURN_IF_ERROR(fcfg.Get("partition.groups", &grouping));
  ASSIGN_OR_RETURN(auto groups, data::NamedGrouping(grouping));
  int64_t epochs = 1, batch = 64, seed = 1;
  double lr = 1e-3, wd = 0;
  std::string opt = "adam", cw = "none";
  fcfg.Get("local.epochs", &epochs).ok();
  fcfg.Get("local.batch_size", &batch).ok();
  fcfg.Get("local.lr", &lr).ok();
  fcfg.Get("local.weight_decay", &wd).ok();
  fcfg.Get("local.optimizer", &opt).ok();
  fcfg.Get("local.class_weights", &cw).ok();
  fcfg.Get("federation.seed", &seed).ok();
  v1::LocalSettings ls;
  ls.set_epochs(epochs * req.rounds);
  ls.set_batch_size(batch);
  ls.set_lr(lr);
  ls.set_weight_decay(wd);
  ls.set_optimizer(opt);
  ls.set_class_weights(cw);
  auto lower = [](std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(c));
    return s;
  };
  std::vector<DemoModelMetrics> local;
  for (const auto& p : req.parties) {
    const std::string region = lower(p.substr(p.rfind('-') + 1));
    std::vector<int64_t> keep;
    for (size_t i = 0; i < all.train_groups.size(); ++i) {
      const std::string& raw = all.train_groups[i];
      if (lower(groups.count(raw) ? groups.at(raw) : raw) == region)
        keep.push_back(static_cast<int64_t>(i));
    }
    data::LoadedData mine = all;
    at::Tensor sel = torch::tensor(keep, torch::kInt64);
    mine.train = {all.train.x.index_select(0, sel), all.train.y.index_select(0, sel)};
    torch::manual_seed(static_cast<uint64_t>(seed));
    ASSIGN_OR_RETURN(auto model, nn::Model::Create(model_config));
    RETURN_IF_ERROR(
        LocalTrain(*model, mine.train, mine.task, mine.num_classes, ls, static_cast<uint64_t>(seed))
            .status());
    DemoModelMetrics m = Measure(*model, all);
    m.name = p;
    m.examples = static_cast<int64_t>(keep.size());
    local.push_back(m);
  }
  return local;
}

}  // namespace

nlohmann::json DemoModelMetrics::ToJson() const {
  return {{"name", name}, {"examples", examples}, {"recall", recall},
          {"fpr", fpr},   {"roc_auc", roc_auc},   {"pr_auc", pr_auc}};
}

Result<DemoEvaluation> EvaluateDemo(const DemoEvaluationRequest& req) {
  // The same data the banks hold, for the local-only baselines and the shared test set.
  ASSIGN_OR_RETURN(Config fcfg, Config::Load(req.federation_file));
  data::DataOptions dopts;
  RETURN_IF_ERROR(data::ParseDataOptions(fcfg, &dopts));
  RETURN_IF_ERROR(fcfg.Get("partition.column", &dopts.group_column));
  ASSIGN_OR_RETURN(data::LoadedData all, data::LoadData(dopts, req.home));

  DemoEvaluation ev;
  ASSIGN_OR_RETURN(nn::LoadedArtifact fed_model, nn::LoadArtifact(req.secure_artifact));
  ASSIGN_OR_RETURN(nn::LoadedArtifact plain_model, nn::LoadArtifact(req.plain_artifact));
  ev.federated = Measure(*fed_model.model, all);
  ev.federated.name = "federated";
  ev.federated.examples = all.train.size();
  std::vector<float> ws = Flatten(fed_model.model->NamedState()),
                     wp = Flatten(plain_model.model->NamedState());
  for (size_t i = 0; i < ws.size() && i < wp.size(); ++i) {
    ev.max_diff = std::max(ev.max_diff, std::abs(static_cast<double>(ws[i]) - wp[i]));
  }
  // Later rounds train from models that already differ, and ReLU networks amplify that: the sum
  // of the per-round bounds is reported, not asserted.
  const auto& history = fed_model.manifest["federation"]["history"];
  for (const auto& h : history) ev.bound += h.value("error_bound", 0.0);
  ev.first_bound = history.empty() ? 0.0 : history[0].value("error_bound", 0.0);
  {
    // Every round, not only the last: the schemes must agree all along.
    ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
    for (int64_t r = 1; r <= req.rounds; ++r) {
      ASSIGN_OR_RETURN(double d, RoundDifference(*store, req.secure_run_id, req.plain_run_id, r));
      if (r == 1) ev.first_diff = d;
      ev.max_diff = std::max(ev.max_diff, d);
    }
  }
  ASSIGN_OR_RETURN(ev.local_only, LocalOnly(req, fcfg, all, fed_model.model->config()));

  const auto test_labels = Labels(all.test);
  ev.test_rows = static_cast<int64_t>(all.test.size());
  ev.test_bad_percent =
      test_labels.empty()
          ? 0.0
          : 100.0 * static_cast<double>(std::count(test_labels.begin(), test_labels.end(), 1)) /
                static_cast<double>(test_labels.size());
  return ev;
}

}  // namespace ronghe::fed
