#include "ronghe/stream/novelty.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "ronghe/data/source.h"
#include "ronghe/nn/model.h"
#include "ronghe/serve/repository.h"

namespace ronghe::stream {

using nlohmann::json;

double Energy(const float* logits, int64_t n) {
  float m = logits[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, logits[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(logits[i] - m));
  return -(static_cast<double>(m) + std::log(s));
}

double Quantile(std::vector<double>* v, double q) {
  if (v->empty()) return 0;
  std::sort(v->begin(), v->end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(v->size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v->size() - 1);
  return (*v)[lo] + (pos - static_cast<double>(lo)) * ((*v)[hi] - (*v)[lo]);
}

double ClassGaussians::Distance(const float* z, std::vector<double>* scratch) const {
  // (z-m)'P(z-m) = z'Pz - 2 m'Pz + m'Pm: one d x d product per frame, then d per class.
  std::vector<double>& pz = *scratch;
  pz.assign(static_cast<size_t>(dim), 0.0);
  for (int64_t i = 0; i < dim; ++i) {
    const double* row = precision.data() + i * dim;
    double s = 0;
    for (int64_t j = 0; j < dim; ++j) s += row[j] * static_cast<double>(z[j]);
    pz[static_cast<size_t>(i)] = s;
  }
  double zpz = 0;
  for (int64_t i = 0; i < dim; ++i) zpz += static_cast<double>(z[i]) * pz[static_cast<size_t>(i)];
  double best = INFINITY;
  for (int64_t k = 0; k < classes; ++k) {
    const double* pm = p_means.data() + k * dim;
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += pm[i] * static_cast<double>(z[i]);
    best = std::min(best, zpz - 2 * dot + m_p_m[static_cast<size_t>(k)]);
  }
  return best;
}

namespace {

ClassGaussians Build(const at::Tensor& means, const at::Tensor& precision) {
  ClassGaussians g;
  g.classes = means.size(0);
  g.dim = means.size(1);
  at::Tensor p = precision.to(torch::kDouble).contiguous();
  at::Tensor pm = means.to(torch::kDouble).mm(p).contiguous();  // P symmetric: (P m_k)' = m_k' P
  at::Tensor mpm = (pm * means.to(torch::kDouble)).sum(1).contiguous();
  g.precision.assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  g.p_means.assign(pm.data_ptr<double>(), pm.data_ptr<double>() + pm.numel());
  g.m_p_m.assign(mpm.data_ptr<double>(), mpm.data_ptr<double>() + mpm.numel());
  return g;
}

Result<ClassGaussians> Fit(const at::Tensor& e, const at::Tensor& y, int64_t classes,
                           std::vector<std::vector<double>>* means_out) {
  at::Tensor z = e.to(torch::kDouble);
  const int64_t d = z.size(1);
  at::Tensor means = torch::zeros({classes, d}, torch::kDouble);
  at::Tensor centred = z.clone();
  for (int64_t k = 0; k < classes; ++k) {
    at::Tensor idx = y.eq(k).nonzero().squeeze(1);
    if (idx.size(0) == 0) return InvalidArgument("no example of class " + std::to_string(k));
    means[k] = z.index_select(0, idx).mean(0);
    centred.index_copy_(0, idx, z.index_select(0, idx) - means[k]);
  }
  // A small ridge keeps the inverse finite where ReLU leaves dimensions always zero.
  at::Tensor cov = centred.t().mm(centred) / static_cast<double>(z.size(0)) +
                   1e-6 * torch::eye(d, torch::kDouble);
  at::Tensor precision = torch::inverse(cov);
  if (means_out) {
    means_out->clear();
    at::Tensor m = means.contiguous();
    for (int64_t k = 0; k < classes; ++k) {
      means_out->emplace_back(m[k].data_ptr<double>(), m[k].data_ptr<double>() + d);
    }
  }
  return Build(means, precision);
}

// The manifest's data set (train and validation inputs), loaded once per process.
Result<data::LoadedData> ManifestData(const json& manifest, const std::string& home) {
  static std::mutex mu;
  static std::map<std::string, data::LoadedData> cache;
  if (!manifest.contains("data") || !manifest.contains("preprocessing")) {
    return InvalidArgument("the model's manifest names no data set to calibrate on");
  }
  const std::string key = manifest["data"].dump() + manifest["preprocessing"].dump();
  std::lock_guard<std::mutex> l(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ASSIGN_OR_RETURN(data::DataOptions o, data::DataOptions::FromJson(manifest["data"]));
  ASSIGN_OR_RETURN(data::LoadedData d, data::LoadData(o, home, &manifest["preprocessing"]));
  cache[key] = d;
  return d;
}

// Rows of x through the served version: logits [N, outputs] and, when served with them,
// embeddings [N, dim].
Status RunServed(serve::ServedVersion& v, const at::Tensor& x, at::Tensor* logits,
                 at::Tensor* embeddings) {
  const int64_t chunk = std::max<int64_t>(1, v.batching().max_batch_size);
  std::vector<at::Tensor> outs;
  for (int64_t i = 0; i < x.size(0); i += chunk) {
    ASSIGN_OR_RETURN(at::Tensor y, v.Infer(x.narrow(0, i, std::min(chunk, x.size(0) - i)), 0, 0));
    outs.push_back(y);
  }
  at::Tensor all = torch::cat(outs, 0);
  *logits = all.narrow(1, 0, v.outputs()).contiguous();
  if (embeddings && v.embeddings()) {
    *embeddings = all.narrow(1, v.outputs(), all.size(1) - v.outputs()).contiguous();
  }
  return Status::OK();
}

}  // namespace

json ClassGaussians::ToJson(const std::vector<std::vector<double>>& means) const {
  std::vector<std::vector<double>> p;
  for (int64_t i = 0; i < dim; ++i) {
    p.emplace_back(precision.begin() + i * dim, precision.begin() + (i + 1) * dim);
  }
  return {{"score", "mahalanobis"}, {"means", means}, {"precision", p}};
}

Result<ClassGaussians> GaussiansFromJson(const json& j) {
  try {
    auto means = j.at("means").get<std::vector<std::vector<double>>>();
    auto p = j.at("precision").get<std::vector<std::vector<double>>>();
    if (means.empty() || p.size() != means[0].size()) return DataLoss("novelty: shapes disagree");
    const int64_t c = static_cast<int64_t>(means.size()), d = static_cast<int64_t>(p.size());
    at::Tensor m = torch::empty({c, d}, torch::kDouble), pr = torch::empty({d, d}, torch::kDouble);
    for (int64_t k = 0; k < c; ++k) {
      if (static_cast<int64_t>(means[static_cast<size_t>(k)].size()) != d)
        return DataLoss("novelty: a mean of another width");
      for (int64_t i = 0; i < d; ++i)
        m[k][i] = means[static_cast<size_t>(k)][static_cast<size_t>(i)];
    }
    for (int64_t i = 0; i < d; ++i) {
      if (static_cast<int64_t>(p[static_cast<size_t>(i)].size()) != d)
        return DataLoss("novelty: the precision is not square");
      for (int64_t k = 0; k < d; ++k) pr[i][k] = p[static_cast<size_t>(i)][static_cast<size_t>(k)];
    }
    return Build(m, pr);
  } catch (const json::exception& e) {
    return DataLoss(std::string("novelty statistics: ") + e.what());
  }
}

Result<json> NoveltyStatistics(nn::Model& model, const data::TensorData& d) {
  torch::NoGradGuard g;
  model.SetTraining(false);
  std::vector<at::Tensor> es;
  for (int64_t i = 0; i < d.x.size(0); i += 1024) {
    es.push_back(model.Embed(d.x.narrow(0, i, std::min<int64_t>(1024, d.x.size(0) - i))));
  }
  const int64_t classes = d.y.max().item<int64_t>() + 1;
  std::vector<std::vector<double>> means;
  ASSIGN_OR_RETURN(ClassGaussians gs, Fit(torch::cat(es, 0), d.y, classes, &means));
  return gs.ToJson(means);
}

Result<NoveltyCalibration> CalibrateNovelty(serve::ServedVersion& version, const std::string& home,
                                            double far, int64_t max_frames,
                                            const std::string& score) {
  if (!(far > 0 && far < 1)) return InvalidArgument("false_alarm_rate must lie in (0, 1)");
  if (score != "mahalanobis" && score != "energy") {
    return InvalidArgument("novelty score '" + score + "' is not mahalanobis or energy");
  }
  if (score == "mahalanobis" && !version.embeddings()) {
    return InvalidArgument("the Mahalanobis score needs a repository served with embeddings");
  }
  ASSIGN_OR_RETURN(data::LoadedData d, ManifestData(version.manifest(), home));
  NoveltyCalibration c;
  c.score = score;
  c.false_alarm_rate = far;
  if (score == "mahalanobis") {
    const json& man = version.manifest();
    if (man.contains("novelty") && man["novelty"].is_object()) {
      ASSIGN_OR_RETURN(c.gaussians, GaussiansFromJson(man["novelty"]));
    } else {
      // Up to 20,000 training frames: enough for a 64-wide covariance, a second or two here.
      const int64_t n = std::min<int64_t>(20000, d.train.x.size(0));
      at::Tensor logits, emb;
      RETURN_IF_ERROR(RunServed(version, d.train.x.narrow(0, 0, n), &logits, &emb));
      ASSIGN_OR_RETURN(c.gaussians, Fit(emb, d.train.y.narrow(0, 0, n), d.num_classes, nullptr));
    }
    if (c.gaussians.classes != version.outputs()) {
      return DataLoss("novelty statistics for " + std::to_string(c.gaussians.classes) +
                      " classes, the model has " + std::to_string(version.outputs()));
    }
  }
  at::Tensor x = d.val.size() > 0 ? d.val.x : d.test.x;
  x = x.narrow(0, 0, std::min<int64_t>(x.size(0), std::max<int64_t>(max_frames, 100)));
  at::Tensor logits, emb;
  RETURN_IF_ERROR(RunServed(version, x, &logits, &emb));
  std::vector<double> scores;
  std::vector<double> scratch;
  for (int64_t r = 0; r < logits.size(0); ++r) {
    scores.push_back(score == "energy"
                         ? Energy(logits.data_ptr<float>() + r * logits.size(1), logits.size(1))
                         : c.gaussians.Distance(emb.data_ptr<float>() + r * emb.size(1), &scratch));
  }
  c.frames = static_cast<int64_t>(scores.size());
  std::vector<double> sorted = scores;
  c.threshold = Quantile(&sorted, 1 - far);
  int64_t above = 0;
  for (double s : scores) above += s > c.threshold;
  c.measured_rate =
      static_cast<double>(above) / static_cast<double>(std::max<int64_t>(1, c.frames));
  return c;
}

}  // namespace ronghe::stream
