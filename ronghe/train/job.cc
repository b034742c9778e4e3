#include "ronghe/train/job.h"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <thread>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/base/resource.h"
#include "ronghe/data/batch.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/store/run_store.h"

namespace ronghe::train {

std::string RunDir(const std::string& home, int64_t run_id) {
  return home + "/runs/" + std::to_string(run_id);
}

namespace {

struct ParsedJob {
  std::string name;
  data::DataOptions data;
  nn::ModelConfig model;
  TrainOptions train;
};

Result<ParsedJob> ParseJob(Config& cfg) {
  ParsedJob j;
  RETURN_IF_ERROR(cfg.Get("job.name", &j.name));
  RETURN_IF_ERROR(data::ParseDataOptions(cfg, &j.data));
  RETURN_IF_ERROR(nn::ParseModelConfig(cfg, &j.model));
  RETURN_IF_ERROR(ParseTrainOptions(cfg, &j.train));
  RETURN_IF_ERROR(cfg.CheckNoUnknownKeys());
  if (j.name.empty()) j.name = j.data.dataset + "-" + j.model.kind;
  return j;
}

Status RecordArtifact(store::Job* job, const std::string& kind, const std::string& path) {
  ASSIGN_OR_RETURN(std::string sha, Sha256FileHex(path));
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return job->Artifact({kind, path, sha, static_cast<int64_t>(bytes.size())});
}

nlohmann::json ToJson(const MetricMap& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m)
    j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  return j;
}

// Trains the parsed job. `job` is null on ranks other than 0 of a data-parallel run: they train
// but write nothing.
Result<TrainResult> TrainWithJob(const ParsedJob& pj, const std::string& home, store::Job* job,
                                 bool resume, const std::string& out, dist::Collective* coll,
                                 std::string* artifact_path, data::Task* task) {
  const bool lead = job != nullptr;
  const std::string dir = lead ? RunDir(home, job->id()) : "";
  const std::string who =
      lead ? "run " + std::to_string(job->id()) : "rank " + std::to_string(coll->rank());
  ASSIGN_OR_RETURN(data::LoadedData data, data::LoadData(pj.data, home));
  *task = data.task;
  if (lead) {
    spdlog::info("{}: {} train / {} val / {} test examples of {} ({}{})", who, data.train.size(),
                 data.val.size(), data.test.size(), pj.data.dataset, data::TaskName(data.task),
                 data.train.sides.empty()
                     ? ""
                     : fmt::format(", at {} px", fmt::join(pj.data.resolutions, "/")));
  }
  if (!data.train.sides.empty() && pj.model.kind != "cnn") {
    return InvalidArgument(
        "model.kind: images of mixed resolutions (data.resolutions) need the cnn, whose "
        "adaptive pooling takes any size; '" +
        pj.model.kind + "' has a fixed input");
  }
  if (!data.train.lengths.empty() && pj.model.kind != "lstm" && pj.model.kind != "gru") {
    return InvalidArgument(
        "model.kind: windows of mixed lengths (data.window.lengths) need the lstm, which "
        "reads any length; '" +
        pj.model.kind + "' has a fixed input");
  }
  nn::ModelConfig mc = pj.model;
  mc.input_shape = data.input_shape;
  mc.outputs = data.task == data::Task::kBinary       ? 1
               : data.task == data::Task::kMulticlass ? data.num_classes
                                                      : pj.data.window.horizon;
  torch::manual_seed(pj.train.seed);
  ASSIGN_OR_RETURN(auto model, nn::Model::Create(mc));
  if (lead) {
    spdlog::info("{}: {} model, {} parameters, precision {}, batching {}{}", who, mc.kind,
                 model->NumParameters(), pj.train.precision, pj.train.batching,
                 coll ? fmt::format(", {} processes", coll->world()) : std::string());
  }
  ASSIGN_OR_RETURN(auto trainer, Trainer::Create(pj.train, model.get(), &data, job,
                                                 lead ? dir + "/checkpoint.rhc" : "", coll));
  ASSIGN_OR_RETURN(TrainResult r, trainer->Run(resume));
  if (!lead) return r;

  nlohmann::json manifest = {
      {"name", pj.name},
      {"run_id", job->id()},
      {"task", data::TaskName(data.task)},
      {"classes", data.class_names},
      {"data", pj.data.ToJson()},
      {"data_sha256", data.data_sha256},
      {"preprocessing", data.preprocessing},
      {"train", pj.train.ToJson()},
      {"metrics", {{"val", ToJson(r.val)}, {"test", ToJson(r.test)}}},
      {"epochs_completed", r.epochs_completed},
      {"processes", r.world},
  };
  *artifact_path = dir + "/model.rhm";
  RETURN_IF_ERROR(nn::SaveArtifact(*artifact_path, *model, manifest));
  RETURN_IF_ERROR(RecordArtifact(job, "model", *artifact_path));
  if (!out.empty()) {
    RETURN_IF_ERROR(nn::SaveArtifact(out, *model, manifest));
    RETURN_IF_ERROR(RecordArtifact(job, "model", out));
  }
  RETURN_IF_ERROR(RecordArtifact(job, "checkpoint", dir + "/checkpoint.rhc"));
  return r;
}

// Every rank's resource use, summed into rank 0's run record (rows: wall, user, system, RSS).
Status GatherUsage(dist::Collective* coll, const ResourceMeter& meter, store::Job* job) {
  at::Tensor t = torch::zeros({coll->world(), 4}, torch::kFloat64);
  ResourceUsage u = meter.Read();
  t[coll->rank()][0] = u.wall_seconds;
  t[coll->rank()][1] = u.cpu_user_seconds;
  t[coll->rank()][2] = u.cpu_system_seconds;
  t[coll->rank()][3] = static_cast<double>(u.peak_rss_bytes);
  RETURN_IF_ERROR(coll->AllReduceSum({t}));
  if (!job) return Status::OK();
  for (int r = 1; r < coll->world(); ++r) {
    job->AddExternalUsage({t[r][0].item<double>(), t[r][1].item<double>(), t[r][2].item<double>(),
                           static_cast<int64_t>(t[r][3].item<double>()), "cpu", 1});
  }
  return Status::OK();
}

}  // namespace

Result<TrainJobOutcome> RunTrainJob(const TrainJobRequest& req) {
  std::unique_ptr<dist::Collective> coll;
  if (req.dist.world > 1) {
    ASSIGN_OR_RETURN(coll, dist::Collective::Connect(req.dist));
  }
  const int rank = coll ? coll->rank() : 0;
  ResourceMeter meter;
  std::unique_ptr<store::RunStore> store;
  std::unique_ptr<Config> cfg;
  std::unique_ptr<store::Job> job;
  bool resume = req.resume_run > 0;
  ParsedJob pj;
  // Rank 0 (or a lone process): the config, the run record and its folder.
  auto setup = [&]() -> Status {
    ASSIGN_OR_RETURN(store, store::OpenHomeStore(req.home));
    if (resume) {
      ASSIGN_OR_RETURN(store::RunRecord run, store->GetRun(req.resume_run));
      if (run.kind != "train") {
        return InvalidArgument("run " + std::to_string(run.id) + " is a '" + run.kind +
                               "' job, not a training run");
      }
      if (run.status == "succeeded") {
        return FailedPrecondition("run " + std::to_string(run.id) +
                                  " already finished; nothing to resume");
      }
      if (run.status == "running") {
        return FailedPrecondition("run " + std::to_string(run.id) + " is still running (pid " +
                                  std::to_string(run.pid) + ")");
      }
      std::string path = RunDir(req.home, run.id) + "/config.toml";
      ASSIGN_OR_RETURN(Config c, Config::Load(path));
      cfg = std::make_unique<Config>(std::move(c));
    } else {
      if (req.config_path.empty())
        return InvalidArgument("a job config file is required (--config FILE)");
      ASSIGN_OR_RETURN(Config c, Config::Load(req.config_path));
      cfg = std::make_unique<Config>(std::move(c));
    }
    for (const auto& o : req.overrides) RETURN_IF_ERROR(cfg->ApplyOverride(o));
    ASSIGN_OR_RETURN(pj, ParseJob(*cfg));
    if (resume) {
      ASSIGN_OR_RETURN(job, store::Job::Resume(store.get(), req.resume_run));
    } else {
      ASSIGN_OR_RETURN(job, store::Job::Start(store.get(), "train", pj.name, cfg->ToJson()));
    }
    std::string dir = RunDir(req.home, job->id());
    RETURN_IF_ERROR(MakeDirs(dir));
    return WriteFileAtomic(dir + "/config.toml", cfg->ToToml());
  };
  Status st = rank == 0 ? setup() : Status::OK();
  if (coll) {
    // Rank 0 hands every rank the configuration it resolved, or the reason it could not start.
    nlohmann::json msg =
        st.ok() && rank == 0
            ? nlohmann::json{{"ok", true}, {"toml", cfg->ToToml()}, {"run", job->id()}}
            : nlohmann::json{{"ok", false}, {"error", st.message()}};
    auto got = coll->BroadcastBytes(msg.dump());
    if (!got.ok()) {
      if (job) (void)job->Finish(got.status());
      return got.status();
    }
    if (rank != 0) {
      auto m = nlohmann::json::parse(*got, nullptr, false);
      if (m.is_discarded() || !m.contains("ok"))
        return DataLoss("rank 0 sent a malformed configuration");
      if (!m["ok"].get<bool>())
        return FailedPrecondition("rank 0 could not start the run: " + m.value("error", ""));
      ASSIGN_OR_RETURN(Config c, Config::Parse(m["toml"].get<std::string>(),
                                               "run " + std::to_string(m["run"].get<int64_t>()) +
                                                   " (from rank 0)"));
      cfg = std::make_unique<Config>(std::move(c));
      ASSIGN_OR_RETURN(pj, ParseJob(*cfg));
    }
  }
  if (!st.ok()) {
    if (job) (void)job->Finish(st);
    return job ? st.WithContext("run " + std::to_string(job->id())) : st;
  }
  if (pj.train.threads == 0 && req.local_world > 1) {
    // N ranks each running every CPU's worth of threads would oversubscribe the host.
    pj.train.threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / req.local_world);
  }
  TrainJobOutcome outcome;
  outcome.run_id = job ? job->id() : 0;
  auto r = TrainWithJob(pj, req.home, job.get(), resume, req.out, coll.get(), &outcome.artifact,
                        &outcome.task);
  if (r.ok()) {
    outcome.result = *r;
    outcome.result.resumed = resume || r->resumed;
    if (coll) st = GatherUsage(coll.get(), meter, job.get());
  } else {
    st = r.status();
  }
  if (!job) {
    RETURN_IF_ERROR(st);
    return outcome;
  }
  Status fin = job->Finish(st);
  if (!st.ok()) return st.WithContext("run " + std::to_string(outcome.run_id));
  RETURN_IF_ERROR(fin);
  return outcome;
}

Result<EvalJobOutcome> RunEvalJob(const EvalJobRequest& req) {
  ASSIGN_OR_RETURN(nn::LoadedArtifact art, nn::LoadArtifact(req.artifact));
  const auto& m = art.manifest;
  if (!m.contains("data") || !m.contains("preprocessing") || !m.contains("task")) {
    return DataLoss(req.artifact + ": manifest lacks data, preprocessing or task");
  }
  ASSIGN_OR_RETURN(data::DataOptions dopts, data::DataOptions::FromJson(m["data"]));
  ASSIGN_OR_RETURN(data::Task task, data::ParseTask(m["task"].get<std::string>()));
  ASSIGN_OR_RETURN(auto store, store::OpenHomeStore(req.home));
  nlohmann::json cfg = {{"artifact", req.artifact}, {"split", req.split}};
  ASSIGN_OR_RETURN(auto job,
                   store::Job::Start(store.get(), "eval", m.value("name", "model"), cfg.dump()));
  EvalJobOutcome out;
  out.run_id = job->id();
  out.task = task;
  auto run = [&]() -> Status {
    if (req.split != "train" && req.split != "val" && req.split != "test") {
      return InvalidArgument("--split must be train, val or test");
    }
    ASSIGN_OR_RETURN(data::LoadedData data, data::LoadData(dopts, req.home, &m["preprocessing"]));
    if (data.task != task)
      return DataLoss(req.artifact + ": the data's task differs from the model's");
    if (m.value("data_sha256", "") != data.data_sha256) {
      spdlog::warn("{}: data differs from the data the model was trained on (sha256 {} vs {})",
                   req.artifact, data.data_sha256, m.value("data_sha256", ""));
    }
    const data::TensorData& d = req.split == "train" ? data.train
                                : req.split == "val" ? data.val
                                                     : data.test;
    // A model trained on pad-to-max batches is evaluated the same way.
    EvalOptions eo;
    if (m.contains("train") && m["train"].value("batching", "bucket") == "pad" &&
        data::MixedSizes(d)) {
      eo.canvas = data::MaxSize(data.train);
    }
    ASSIGN_OR_RETURN(out.metrics, Evaluate(*art.model, d, task, data.preprocessing, eo));
    std::vector<store::MetricRecord> recs;
    for (const auto& [k, v] : out.metrics)
      if (std::isfinite(v)) recs.push_back({0, req.split, k, v});
    return job->Metrics(recs);
  };
  Status st = run();
  Status fin = job->Finish(st);
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(fin);
  return out;
}

}  // namespace ronghe::train
