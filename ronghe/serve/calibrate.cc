#include "ronghe/serve/calibrate.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>

#include "ronghe/base/file.h"
#include "ronghe/data/source.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/serve/repository.h"

namespace ronghe::serve {

namespace {

struct Scored {
  at::Tensor conf;                 // [n] light confidence
  at::Tensor light_ok, full_ok;    // [n] bool
  double light_s = 0, full_s = 0;  // forward seconds over the split
};

Result<at::Tensor> Logits(nn::Model& model, const at::Tensor& x, double* seconds) {
  c10::InferenceMode guard;
  auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> parts;
  try {
    for (int64_t i = 0; i < x.size(0); i += 1024) {
      parts.push_back(model.Forward(x.slice(0, i, std::min(x.size(0), i + 1024))));
    }
  } catch (const std::exception& e) {
    return Internal(std::string("model failed on the calibration data: ") + e.what());
  }
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return at::cat(parts, 0).to(at::kFloat);
}

at::Tensor Classes(const at::Tensor& logits, bool binary) {
  return binary ? (logits.select(1, 0) > 0).to(at::kLong) : logits.argmax(1);
}

CascadeQuality Quality(const Scored& s, double threshold) {
  CascadeQuality q;
  q.rows = s.conf.size(0);
  if (q.rows == 0) return q;
  at::Tensor esc = s.conf < threshold;
  at::Tensor ok = at::where(esc, s.full_ok, s.light_ok);
  double n = static_cast<double>(q.rows);
  q.escalated = esc.sum().item<double>() / n;
  q.cascade_accuracy = ok.sum().item<double>() / n;
  q.full_accuracy = s.full_ok.sum().item<double>() / n;
  q.light_accuracy = s.light_ok.sum().item<double>() / n;
  q.relative_cost = s.full_s > 0 ? (s.light_s + q.escalated * s.full_s) / s.full_s : 0;
  return q;
}

// The path of the artifact a "name[:version]" reference serves.
Result<std::string> ArtifactOf(const std::string& repo, const std::string& ref) {
  auto colon = ref.find(':');
  std::string name = ref.substr(0, colon);
  std::string version = colon == std::string::npos ? "" : ref.substr(colon + 1);
  ASSIGN_OR_RETURN(ModelSettings s, ReadModelSettings(repo + "/" + name, name));
  if (version.empty()) version = s.default_version;
  if (version.empty() && s.aliases.count("champion")) version = "champion";
  if (auto a = s.aliases.find(version); a != s.aliases.end()) version = std::to_string(a->second);
  if (version.empty()) {
    int64_t best = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(repo + "/" + name, ec)) {
      std::string n = e.path().filename().string();
      if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit) && n.size() < 18 &&
          std::filesystem::exists(e.path() / "model.rhm")) {
        best = std::max<int64_t>(best, std::stoll(n));
      }
    }
    if (best == 0) return NotFound(repo + "/" + name + ": no version holding model.rhm");
    version = std::to_string(best);
  }
  return repo + "/" + name + "/" + version + "/model.rhm";
}

}  // namespace

Result<CalibrateOutcome> Calibrate(const CalibrateRequest& req) {
  std::string route_dir = req.repo + "/" + req.route;
  ASSIGN_OR_RETURN(ModelSettings rs, ReadModelSettings(route_dir, req.route));
  if (!rs.is_cascade) return InvalidArgument(route_dir + "/config.toml has no [cascade] section");
  ASSIGN_OR_RETURN(std::string light_path, ArtifactOf(req.repo, rs.cascade.light));
  ASSIGN_OR_RETURN(std::string full_path, ArtifactOf(req.repo, rs.cascade.full));
  ASSIGN_OR_RETURN(nn::LoadedArtifact light, nn::LoadArtifact(light_path));
  ASSIGN_OR_RETURN(nn::LoadedArtifact full, nn::LoadArtifact(full_path));
  auto load = [&](const nn::LoadedArtifact& a,
                  const std::string& path) -> Result<data::LoadedData> {
    const auto& m = a.manifest;
    if (!m.contains("data") || !m.contains("preprocessing")) {
      return DataLoss(
          path + ": manifest lacks data or preprocessing: calibration needs the model's data set");
    }
    ASSIGN_OR_RETURN(data::DataOptions o, data::DataOptions::FromJson(m["data"]));
    return data::LoadData(o, req.home, &m["preprocessing"]);
  };
  ASSIGN_OR_RETURN(data::LoadedData ld, load(light, light_path));
  ASSIGN_OR_RETURN(data::LoadedData fd, load(full, full_path));
  if (ld.task == data::Task::kRegression)
    return InvalidArgument("a cascade routes classifiers only");
  bool binary = ld.task == data::Task::kBinary;
  auto score = [&](const data::TensorData& l, const data::TensorData& f,
                   const std::string& split) -> Result<Scored> {
    if (l.size() != f.size() || !at::equal(l.y, f.y)) {
      return FailedPrecondition(
          "the light and full models' " + split +
          " splits differ (different data options or seeds): they cannot be compared");
    }
    Scored s;
    ASSIGN_OR_RETURN(at::Tensor lo, Logits(*light.model, l.x, &s.light_s));
    ASSIGN_OR_RETURN(at::Tensor fo, Logits(*full.model, f.x, &s.full_s));
    if (binary) {
      at::Tensor p = at::sigmoid(lo.select(1, 0));
      s.conf = at::max(p, 1 - p);
    } else {
      s.conf = std::get<0>(at::softmax(lo, 1).max(1));
    }
    at::Tensor y = l.y.to(at::kLong).view({-1});
    s.light_ok = Classes(lo, binary) == y;
    s.full_ok = Classes(fo, binary) == y;
    return s;
  };
  ASSIGN_OR_RETURN(Scored val, score(ld.val, fd.val, "validation"));
  ASSIGN_OR_RETURN(Scored test, score(ld.test, fd.test, "test"));
  if (val.conf.size(0) == 0) return FailedPrecondition("the validation split is empty");

  CalibrateOutcome out;
  double full_acc = val.full_ok.to(at::kDouble).mean().item<double>();
  out.target = req.target_accuracy >= 0 ? req.target_accuracy : full_acc - req.max_drop;
  // Escalating the k least confident rows: accuracy(k) = light-correct among the rest + full-
  // correct among those k. Sweep k over the sorted confidences with prefix sums; thresholds sit
  // at distinct confidence values so "conf < threshold" escalates exactly those rows.
  at::Tensor order = std::get<1>(val.conf.sort());
  at::Tensor conf = val.conf.index_select(0, order).to(at::kDouble).contiguous();
  at::Tensor lok = val.light_ok.index_select(0, order).to(at::kDouble);
  at::Tensor fok = val.full_ok.index_select(0, order).to(at::kDouble);
  int64_t n = conf.size(0);
  // correct(k) = sum_{i<k} fok + sum_{i>=k} lok
  at::Tensor f_prefix = at::cat({at::zeros({1}, at::kDouble), fok.cumsum(0)});
  at::Tensor l_suffix = at::cat({lok.flip(0).cumsum(0).flip(0), at::zeros({1}, at::kDouble)});
  at::Tensor acc = ((f_prefix + l_suffix) / static_cast<double>(n)).contiguous();
  const double* a = acc.data_ptr<double>();
  const double* c = conf.data_ptr<double>();
  int64_t best_k = -1;
  for (int64_t k = 0; k <= n; ++k) {
    if (k > 0 && k < n && c[k] == c[k - 1]) continue;  // a threshold cannot split equal confidences
    if (a[k] >= out.target) {
      best_k = k;
      break;
    }
  }
  if (best_k < 0) {
    return FailedPrecondition(
        "no threshold reaches accuracy " + std::to_string(out.target) +
        " on the validation split (full model alone: " + std::to_string(full_acc) + ")");
  }
  out.threshold = best_k == n ? 1.0 + 1e-9 : c[best_k];
  if (out.threshold > 1.0) out.threshold = 1.0;  // conf < 1.0 escalates all but certain rows
  out.val = Quality(val, out.threshold);
  out.test = Quality(test, out.threshold);

  if (req.write) {
    std::string path = route_dir + "/config.toml";
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    std::ostringstream t;
    t.precision(6);
    t << out.threshold;
    // Replaces the value of the first `threshold = ...` line, keeping comments and layout.
    std::smatch m;
    if (!std::regex_search(text, m,
                           std::regex(R"((^|\n)([ \t]*threshold[ \t]*=[ \t]*)([^\n#]*))"))) {
      return FailedPrecondition(path + ": found no `threshold = ...` line to update");
    }
    std::string rest = text.substr(static_cast<size_t>(m.position(3) + m.length(3)));
    std::string updated = text.substr(0, static_cast<size_t>(m.position(3))) + t.str() +
                          (!rest.empty() && rest[0] == '#' ? " " : "") + rest;
    RETURN_IF_ERROR(WriteFileAtomic(path, updated));
  }
  return out;
}

}  // namespace ronghe::serve
