// Novelty detectors on the inspection model (examples/inspection/repo/parts/1: Fashion-MNIST
// without "Ankle boot"): each score's threshold is set on the validation split (known classes) at
// a false-alarm rate, then measured on the official test split: the false alarms on known classes
// and the share of the held-out class's 1,000 test images flagged.
//   build/bench/novelty_bench [RONGHE_HOME]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "ronghe/data/source.h"
#include "ronghe/nn/artifact.h"

using namespace ronghe;

namespace {

double Quant(at::Tensor v, double q) {
  v = std::get<0>(v.sort());
  const int64_t i = std::min<int64_t>(v.size(0) - 1, static_cast<int64_t>(q * (v.size(0) - 1)));
  return v[i].item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string home = argc > 1 ? argv[1] : std::string(std::getenv("HOME")) + "/.ronghe";
  auto a = nn::LoadArtifact(RONGHE_SOURCE_DIR "/examples/inspection/repo/parts/1/model.rhm");
  if (!a.ok()) return std::fprintf(stderr, "%s\n", a.status().message().c_str()), 1;
  auto o = data::DataOptions::FromJson(a->manifest["data"]).value();
  auto known = data::LoadData(o, home, &a->manifest["preprocessing"]).value();
  o.holdout_classes.clear();
  auto all = data::LoadData(o, home, &a->manifest["preprocessing"]).value();
  at::Tensor novel_x = all.test.x.index_select(0, all.test.y.eq(9).nonzero().squeeze(1));
  torch::NoGradGuard g;
  a->model->SetTraining(false);
  auto run = [&](const at::Tensor& x, bool embed) {
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < x.size(0); i += 2048) {
      at::Tensor b = x.narrow(0, i, std::min<int64_t>(2048, x.size(0) - i));
      out.push_back(embed ? a->model->Embed(b) : a->model->Forward(b));
    }
    return torch::cat(out, 0);
  };
  // Class-conditional Gaussians with one shared covariance, fitted on training embeddings.
  at::Tensor tr = known.train.x.narrow(0, 0, std::min<int64_t>(30000, known.train.x.size(0)));
  at::Tensor ty = known.train.y.narrow(0, 0, tr.size(0));
  at::Tensor e = run(tr, true).to(torch::kDouble);
  const int64_t c = known.num_classes, d = e.size(1);
  at::Tensor means = torch::zeros({c, d}, torch::kDouble);
  at::Tensor centred = e.clone();
  for (int64_t k = 0; k < c; ++k) {
    at::Tensor idx = ty.eq(k).nonzero().squeeze(1);
    means[k] = e.index_select(0, idx).mean(0);
    centred.index_copy_(0, idx, e.index_select(0, idx) - means[k]);
  }
  at::Tensor cov = centred.t().mm(centred) / e.size(0) + 1e-6 * torch::eye(d, torch::kDouble);
  at::Tensor prec = torch::inverse(cov);
  auto maha = [&](const at::Tensor& x) {
    at::Tensor z = run(x, true).to(torch::kDouble);
    at::Tensor best;
    for (int64_t k = 0; k < c; ++k) {
      at::Tensor dz = z - means[k];
      at::Tensor m = (dz.mm(prec) * dz).sum(1);
      best = k == 0 ? m : torch::minimum(best, m);
    }
    return best;
  };
  auto energy = [&](const at::Tensor& x) {
    return -torch::logsumexp(run(x, false), 1).to(torch::kDouble);
  };
  auto msp = [&](const at::Tensor& x) {
    return -std::get<0>(torch::softmax(run(x, false), 1).max(1)).to(torch::kDouble);
  };
  std::printf("%-22s %8s %14s %16s\n", "score", "FAR set", "FAR on test", "held-out flagged");
  for (auto [name, fn] : {std::pair<const char*, std::function<at::Tensor(const at::Tensor&)>>{
                              "energy (logits)", energy},
                          {"max softmax", msp},
                          {"Mahalanobis (embed)", maha}}) {
    at::Tensor v = fn(known.val.x), t = fn(known.test.x), n = fn(novel_x);
    for (double far : {0.01, 0.05}) {
      const double thr = Quant(v, 1 - far);
      std::printf("%-22s %7.0f%% %13.2f%% %15.1f%%\n", name, 100 * far,
                  100 * t.gt(thr).to(torch::kDouble).mean().item<double>(),
                  100 * n.gt(thr).to(torch::kDouble).mean().item<double>());
    }
  }
  return 0;
}
