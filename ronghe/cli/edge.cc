// `ronghe export --edge`: a trained forecaster or classifier as an edge artifact (.rhe) that
// ronghe-edge runs without LibTorch, fp32 or int8, with the accuracy the conversion costs.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>

#include "ronghe/base/file.h"
#include "ronghe/cli/command.h"
#include "ronghe/cli/print.h"
#include "ronghe/data/source.h"
#include "ronghe/edge/export.h"
#include "ronghe/nn/artifact.h"
#include "ronghe/train/trainer.h"

namespace ronghe::cli {
namespace {

struct ExportFlags {
  bool edge = false;
  std::string model, out;
  edge::ExportOptions options;
};

Status RunExport(const ExportFlags& f, const Globals& g) {
  if (!f.edge) return InvalidArgument("export needs a target: --edge (the only one so far)");
  ASSIGN_OR_RETURN(nn::LoadedArtifact art, nn::LoadArtifact(f.model));
  const nlohmann::json& m = art.manifest;
  if (!m.contains("data") || !m.contains("preprocessing") || !m.contains("task"))
    return DataLoss(f.model + ": manifest lacks data, preprocessing or task");
  ASSIGN_OR_RETURN(data::DataOptions dopts, data::DataOptions::FromJson(m["data"]));
  ASSIGN_OR_RETURN(data::Task task, data::ParseTask(m["task"].get<std::string>()));
  // The model's own data with its stored statistics: calibration (int8) on the training split,
  // and the accuracy check on the test split.
  ASSIGN_OR_RETURN(data::LoadedData d, data::LoadData(dopts, g.home, &m["preprocessing"]));
  ASSIGN_OR_RETURN(std::string bytes, edge::ExportEdge(*art.model, m, f.options, &d.train.x));
  ASSIGN_OR_RETURN(auto em, edge::Model::FromBytes(bytes, f.out));
  ASSIGN_OR_RETURN(train::MetricMap libtorch,
                   train::Evaluate(*art.model, d.test, task, d.preprocessing, 1024, "fp32"));
  ASSIGN_OR_RETURN(train::MetricMap at_edge,
                   edge::EvaluateEdge(*em, d.test, task, d.preprocessing));
  ASSIGN_OR_RETURN(double diff, edge::MaxDifference(*em, *art.model, d.test.x));
  RETURN_IF_ERROR(WriteFileAtomic(f.out, bytes));
  auto rhm = ReadFile(f.model);
  const int64_t rhm_bytes = rhm.ok() ? static_cast<int64_t>(rhm->size()) : 0;
  std::printf("wrote %s: %s %s, %ld parameters, %s (the .rhm: %s)\n", f.out.c_str(),
              em->kind().c_str(), em->precision().c_str(), long(em->parameters()),
              FormatBytes(static_cast<int64_t>(bytes.size())).c_str(),
              FormatBytes(rhm_bytes).c_str());
  PrintMetrics("test (LibTorch)", libtorch);
  PrintMetrics("test (edge " + em->precision() + ")", at_edge);
  std::printf("largest |edge - LibTorch| output over %ld test examples: %.3g (model units)\n",
              long(d.test.size()), diff);
  return Status::OK();
}

}  // namespace

void AddEdgeCommands(CLI::App& root, CommandContext& ctx) {
  auto* exp = root.add_subcommand("export", "Convert a model for another runtime");
  auto f = Flags<ExportFlags>();
  exp->add_flag("--edge", f->edge, "An edge artifact (.rhe) for ronghe-edge and libronghe_edge");
  exp->add_option("-m,--model", f->model, "Model artifact (.rhm): mlp, lstm or gru")->required();
  exp->add_option("-o,--out", f->out, "Where to write the .rhe")->required();
  exp->add_option("--precision", f->options.precision, "fp32 (default) or int8")
      ->check(CLI::IsMember({"fp32", "int8"}));
  exp->add_option("--calibration", f->options.calibration,
                  "int8 activation scales: max (default: max |activation|) or mse (the clip "
                  "with the least squared error)")
      ->check(CLI::IsMember({"max", "mse"}));
  exp->add_option("--calibration-examples", f->options.calibration_examples,
                  "int8: training examples that calibrate (default 2048)")
      ->check(CLI::PositiveNumber);
  exp->add_option("--model-version", f->options.model_version,
                  "Version written into the artifact (e.g. the hub version)");
  ctx.On(exp, [f](const Globals& g) { return Done(RunExport(*f, g)); });
}

}  // namespace ronghe::cli
