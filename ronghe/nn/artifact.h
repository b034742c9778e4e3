// Model artifacts: a tensor file (tensor_file.h) whose meta is the manifest - architecture,
// hyper-parameters, input schema with preprocessing statistics, metrics, sha256 of the data.
// Format: docs/formats/model.md.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "ronghe/base/status.h"
#include "ronghe/nn/model.h"

namespace ronghe::nn {

constexpr const char* kArtifactFormat = "ronghe.model";
constexpr int kArtifactVersion = 1;

// Manifest fields the writer fills in: format, format_version, model, created_at. The caller adds
// task, classes, data, preprocessing, metrics, data_sha256, train (anything else is kept as is).
Status SaveArtifact(const std::string& path, Model& model, nlohmann::json manifest);

struct LoadedArtifact {
  nlohmann::json manifest;
  std::unique_ptr<Model> model;  // in eval mode
};

// Never crashes on bad input: every failure is a Status naming the file.
Result<LoadedArtifact> LoadArtifact(const std::string& path);

}  // namespace ronghe::nn
