#include "ronghe/nn/artifact.h"

#include <torch/torch.h>

#include <chrono>

#include "ronghe/base/json.h"
#include "ronghe/nn/tensor_file.h"

namespace ronghe::nn {

Status SaveArtifact(const std::string& path, Model& model, nlohmann::json manifest) {
  manifest["format"] = kArtifactFormat;
  manifest["format_version"] = kArtifactVersion;
  manifest["model"] = model.config().ToJson();
  manifest["parameters"] = model.NumParameters();
  manifest["created_at"] =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  TensorFile f;
  f.meta = std::move(manifest);
  f.tensors = model.NamedState();
  return WriteTensorFile(path, f);
}

Result<LoadedArtifact> LoadArtifact(const std::string& path) {
  ASSIGN_OR_RETURN(TensorFile f, ReadTensorFile(path));
  auto bad = [&](const std::string& why) { return DataLoss(path + ": " + why); };
  const auto& m = f.meta;
  if (!m.is_object() || JsonString(m, "format") != kArtifactFormat) {
    return bad("not a ronghe model artifact (manifest format is not '" +
               std::string(kArtifactFormat) + "')");
  }
  if (!m.contains("format_version") || !m["format_version"].is_number_integer() ||
      m["format_version"].get<int>() != kArtifactVersion) {
    return bad("unsupported model format version");
  }
  if (!m.contains("model")) return bad("manifest has no 'model' section");
  auto config = ModelConfig::FromJson(m["model"]);
  if (!config.ok()) return bad(config.status().message());
  auto model = Model::Create(*config);
  if (!model.ok()) return bad("manifest describes an invalid model: " + model.status().message());
  Status st = (*model)->LoadState(f.tensors);
  if (!st.ok()) return bad(st.message());
  (*model)->SetTraining(false);
  return LoadedArtifact{f.meta, std::move(*model)};
}

}  // namespace ronghe::nn
