#include "ronghe/train/distill.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/store/run_store.h"
#include "ronghe/train/job.h"
#include "ronghe/train/trainer.h"

namespace ronghe::train {
namespace {

// The teacher's outputs on every example of `d`, in eval mode, batched.
torch::Tensor TeacherOutputs(nn::Model& teacher, const data::TensorData& d, int64_t batch) {
  torch::NoGradGuard no_grad;
  teacher.SetTraining(false);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < d.size(); b += batch) {
    int64_t n = std::min(batch, d.size() - b);
    torch::Tensor x = d.x.narrow(0, b, n);
    if (d.lengths.empty()) {
      parts.push_back(teacher.Forward(x).to(torch::kFloat32));
    } else {
      torch::Tensor len = torch::tensor(
          std::vector<int64_t>(d.lengths.begin() + b, d.lengths.begin() + b + n), torch::kInt64);
      parts.push_back(teacher.Forward(x, len).to(torch::kFloat32));
    }
  }
  return torch::cat(parts).contiguous();
}

// One example at a time on one thread, as an edge node or a single request sees the model.
void MeasureLatency(nn::Model& model, const data::TensorData& d, ModelReport* r) {
  torch::NoGradGuard no_grad;
  model.SetTraining(false);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  std::vector<double> ms;
  const int64_t n = std::min<int64_t>(d.size(), 1000);
  for (int64_t i = -50; i < n; ++i) {
    torch::Tensor x = d.x.narrow(0, std::max<int64_t>(i, 0), 1);
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor y = model.Forward(x);
    (void)y.data_ptr<float>();
    double v =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= 0) ms.push_back(v);
  }
  at::set_num_threads(threads);
  std::sort(ms.begin(), ms.end());
  auto q = [&](double p) {
    return ms.empty() ? 0.0 : ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  r->p50_ms = q(0.5);
  r->p99_ms = q(0.99);
}

Result<int64_t> FileBytes(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return static_cast<int64_t>(bytes.size());
}

}  // namespace

Result<DistillJobOutcome> RunDistillJob(const DistillJobRequest& req) {
  if (req.teacher.empty()) return InvalidArgument("a teacher model is required (--teacher FILE)");
  if (req.config_path.empty())
    return InvalidArgument("a student job file is required (--config FILE)");
  ASSIGN_OR_RETURN(nn::LoadedArtifact teacher, nn::LoadArtifact(req.teacher));
  const nlohmann::json& tm = teacher.manifest;
  if (!tm.contains("data") || !tm.contains("preprocessing") || !tm.contains("task")) {
    return DataLoss(req.teacher + ": manifest lacks data, preprocessing or task");
  }
  ASSIGN_OR_RETURN(data::DataOptions dopts, data::DataOptions::FromJson(tm["data"]));
  ASSIGN_OR_RETURN(Config cfg, Config::Load(req.config_path));
  for (const auto& o : req.overrides) RETURN_IF_ERROR(cfg.ApplyOverride(o));
  if (cfg.Has("data")) {
    return InvalidArgument(req.config_path +
                           ": [data] is not allowed: the student learns on its teacher's data "
                           "and inputs (" +
                           dopts.dataset + ")");
  }
  std::string name;
  RETURN_IF_ERROR(cfg.Get("job.name", &name));
  nn::ModelConfig mc;
  RETURN_IF_ERROR(nn::ParseModelConfig(cfg, &mc));
  TrainOptions topts;
  RETURN_IF_ERROR(ParseTrainOptions(cfg, &topts));
  RETURN_IF_ERROR(cfg.Get("distill.alpha", &topts.distill_alpha));
  RETURN_IF_ERROR(cfg.Get("distill.temperature", &topts.distill_temperature));
  if (!(topts.distill_alpha >= 0 && topts.distill_alpha <= 1))
    return cfg.ValueError("distill.alpha", "must lie in [0, 1]");
  if (!(topts.distill_temperature > 0)) return cfg.ValueError("distill.temperature", "must be > 0");
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  if (name.empty()) name = tm.value("name", "model") + "-student";

  ASSIGN_OR_RETURN(std::string teacher_sha, Sha256FileHex(req.teacher));
  ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
  nlohmann::json recorded = nlohmann::json::parse(cfg.ToJson(), nullptr, false);
  if (recorded.is_discarded()) recorded = nlohmann::json::object();
  recorded["teacher"] = {{"path", req.teacher}, {"sha256", teacher_sha}};
  ASSIGN_OR_RETURN(auto job, store::Job::Start(store.get(), "distill", name, recorded.dump()));
  DistillJobOutcome out;
  out.run_id = job->id();
  const std::string dir = RunDir(req.home, job->id());
  auto run = [&]() -> Status {
    RETURN_IF_ERROR(MakeDirs(dir));
    RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.toml", cfg.ToToml()));
    // The teacher's data with the teacher's fitted statistics: both models see the same inputs.
    ASSIGN_OR_RETURN(data::LoadedData data, data::LoadData(dopts, req.home, &tm["preprocessing"]));
    out.task = data.task;
    mc.input_shape = data.input_shape;
    mc.outputs = teacher.model->config().outputs;
    if (!data.train.lengths.empty() && mc.kind != "lstm" && mc.kind != "gru") {
      return InvalidArgument("model.kind: the teacher's windows have mixed lengths; '" + mc.kind +
                             "' has a fixed input (use lstm or gru)");
    }
    data.train.teacher = TeacherOutputs(*teacher.model, data.train, topts.eval_batch_size);
    torch::manual_seed(topts.seed);
    ASSIGN_OR_RETURN(auto student, nn::Model::Create(mc));
    spdlog::info(
        "run {}: distilling {} ({} parameters) into a {} of {} parameters, alpha {}, "
        "temperature {}",
        job->id(), req.teacher, teacher.model->NumParameters(), mc.kind, student->NumParameters(),
        topts.distill_alpha, topts.distill_temperature);
    ASSIGN_OR_RETURN(auto trainer, Trainer::Create(topts, student.get(), &data, job.get(),
                                                   dir + "/checkpoint.rhc"));
    ASSIGN_OR_RETURN(TrainResult r, trainer->Run(false));
    ASSIGN_OR_RETURN(out.teacher.test, Evaluate(*teacher.model, data.test, data.task,
                                                data.preprocessing, topts.eval_batch_size, "fp32"));
    out.student.test = r.test;
    std::vector<store::MetricRecord> recs;
    for (const auto& [k, v] : out.teacher.test)
      if (std::isfinite(v)) recs.push_back({0, "test", "teacher_" + k, v});
    RETURN_IF_ERROR(job->Metrics(recs));

    nlohmann::json manifest = {
        {"name", name},
        {"run_id", job->id()},
        {"task", data::TaskName(data.task)},
        {"classes", data.class_names},
        {"data", dopts.ToJson()},
        {"data_sha256", data.data_sha256},
        {"preprocessing", data.preprocessing},
        {"train", topts.ToJson()},
        {"metrics", {{"val", nlohmann::json::object()}, {"test", nlohmann::json::object()}}},
        {"epochs_completed", r.epochs_completed},
        {"distilled_from",
         {{"path", req.teacher},
          {"sha256", teacher_sha},
          {"name", tm.value("name", "")},
          {"alpha", topts.distill_alpha},
          {"temperature", topts.distill_temperature}}},
    };
    for (const auto& [k, v] : r.val)
      if (std::isfinite(v)) manifest["metrics"]["val"][k] = v;
    for (const auto& [k, v] : r.test)
      if (std::isfinite(v)) manifest["metrics"]["test"][k] = v;
    out.artifact = dir + "/model.rhm";
    RETURN_IF_ERROR(nn::SaveArtifact(out.artifact, *student, manifest));
    ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(out.artifact));
    ASSIGN_OR_RETURN(out.student.bytes, FileBytes(out.artifact));
    RETURN_IF_ERROR(job->Artifact({"model", out.artifact, sha, out.student.bytes}));
    if (!req.out.empty()) {
      RETURN_IF_ERROR(nn::SaveArtifact(req.out, *student, manifest));
      ASSIGN_OR_RETURN(std::string osha, Sha256FileHex(req.out));
      RETURN_IF_ERROR(job->Artifact({"model", req.out, osha, out.student.bytes}));
    }
    ASSIGN_OR_RETURN(out.teacher.bytes, FileBytes(req.teacher));
    out.teacher.parameters = teacher.model->NumParameters();
    out.student.parameters = student->NumParameters();
    MeasureLatency(*teacher.model, data.test, &out.teacher);
    MeasureLatency(*student, data.test, &out.student);
    return job->Metrics({{0, "test", "teacher_parameters", double(out.teacher.parameters)},
                         {0, "test", "parameters", double(out.student.parameters)},
                         {0, "test", "teacher_p99_ms", out.teacher.p99_ms},
                         {0, "test", "p99_ms", out.student.p99_ms}});
  };
  Status st;
  try {
    st = run();
  } catch (const c10::Error& e) {
    st = Internal(std::string("distill: ") + e.what_without_backtrace());
  }
  Status fin = job->Finish(st);
  if (!st.ok()) return st.WithContext("run " + std::to_string(out.run_id));
  RETURN_IF_ERROR(fin);
  return out;
}

}  // namespace ronghe::train
