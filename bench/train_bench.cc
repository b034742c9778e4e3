// Training throughput of the example models on real data, fp32 vs bf16, one process.
// Run through bench/run.sh, which starts one process per benchmark so that each peak-RSS figure
// belongs to one configuration, and writes docs/benchmarks.md.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "ronghe/base/config.h"
#include "ronghe/base/file.h"
#include "ronghe/base/resource.h"
#include "ronghe/data/source.h"
#include "ronghe/nn/model.h"
#include "ronghe/train/trainer.h"

namespace {

using namespace ronghe;

struct Setup {
  data::LoadedData data;
  nn::ModelConfig model;
  train::TrainOptions train;
};

Setup Load(const std::string& example, int64_t limit_train) {
  auto cfg = Config::Load(std::string(RONGHE_SOURCE_DIR) + "/examples/" + example);
  if (!cfg.ok()) throw std::runtime_error(cfg.status().message());
  Setup s;
  data::DataOptions dopts;
  Status st = data::ParseDataOptions(*cfg, &dopts);
  if (st.ok()) st = nn::ParseModelConfig(*cfg, &s.model);
  if (st.ok()) st = train::ParseTrainOptions(*cfg, &s.train);
  if (!st.ok()) throw std::runtime_error(st.message());
  dopts.limit_train = limit_train;
  auto d = data::LoadData(dopts, ResolveHome());
  if (!d.ok()) throw std::runtime_error(d.status().message());
  s.data = std::move(*d);
  // Throughput only: no validation-driven early stop, a tiny validation and test split.
  s.data.val = {s.data.val.x.narrow(0, 0, 64), s.data.val.y.narrow(0, 0, 64)};
  s.data.test = {s.data.test.x.narrow(0, 0, 64), s.data.test.y.narrow(0, 0, 64)};
  s.model.input_shape = s.data.input_shape;
  s.model.outputs = s.data.task == data::Task::kBinary ? 1 : s.data.num_classes;
  s.train.progress = "off";
  s.train.patience = 0;
  s.train.checkpoint_every = 0;
  return s;
}

void BM_Train(benchmark::State& state, const std::string& example, int64_t limit,
              const std::string& precision) {
  Setup s = Load(example, limit);
  s.train.precision = precision;
  s.train.epochs = 1;
  double samples = 0, seconds = 0;
  for (auto _ : state) {
    torch::manual_seed(1);
    auto model = nn::Model::Create(s.model);
    auto trainer = train::Trainer::Create(s.train, model->get(), &s.data, nullptr, "");
    auto r = (*trainer)->Run(false);
    if (!r.ok()) {
      state.SkipWithError(r.status().message().c_str());
      return;
    }
    state.SetIterationTime(r->train_seconds);
    samples += static_cast<double>(s.data.train.size());
    seconds += r->train_seconds;
  }
  state.counters["samples_per_s"] = samples / seconds;
  state.counters["peak_rss_mib"] = PeakRssBytes() / 1048576.0;
  state.counters["torch_threads"] = torch::get_num_threads();
}

BENCHMARK_CAPTURE(BM_Train, cnn_fp32, "fashion_mnist/cnn.toml", 6400, "fp32")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK_CAPTURE(BM_Train, cnn_bf16, "fashion_mnist/cnn.toml", 6400, "bf16")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Train, mlp_fp32, "lending_club/mlp.toml", 0, "fp32")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);
BENCHMARK_CAPTURE(BM_Train, mlp_bf16, "lending_club/mlp.toml", 0, "bf16")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // keep stdout clean for --benchmark_format=json
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
