// From a `[data]` config section to tensors: which data set, its schema, the split, and the
// preprocessing fitted on the training split. The options and the fitted statistics go into the
// model manifest so `ronghe eval` and serving rebuild exactly the same inputs.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/config.h"
#include "ronghe/base/status.h"
#include "ronghe/data/csv.h"
#include "ronghe/data/series.h"

namespace ronghe::data {

enum class Task { kBinary, kMulticlass, kRegression };
const char* TaskName(Task t);
Result<Task> ParseTask(const std::string& s);

struct DataOptions {
  std::string dataset;  // a known set (`ronghe data list`) or "csv"
  std::string path;     // dataset = "csv": the file
  CsvOptions csv;       // header / skip_rows; known sets have the right defaults
  TableSchema schema;   // label, positive, numeric, categorical, ignore, missing
  std::string column;   // series: the value column (taylor: "demand", gretl_load: "load")
  std::vector<std::string> covariates;  // series: more columns read beside the value as history
                                        // features (gretl_load: ["temp"]), each standardised
                                        // on the training split. Default: none.
  WindowOptions window;                 // series windows
  std::vector<double> split = {0.7, 0.15, 0.15};  // Default. Tables and series (chronological).
  double val_fraction = 0.1;  // Default: 0.1. Sets with an official test set (fashion-mnist).
  uint64_t seed = 42;         // Default: 42. Split and shuffles.
  int64_t limit_train = 0;    // Default: 0 = all. Keep only this many training examples.
  std::vector<int64_t> resolutions;  // Images: render each image at one of these sides (pixels),
                                     // chosen per image by a seeded rule (data.seed) from its index
                                     // in the source files. Default: [] = the native size.
  std::vector<std::string> holdout_classes;  // Image sets: classes left out of every split, the
                                             // others renumbered in order (a class that
                                             // "appears later", as the stream demo needs).
                                             // Default: [] = all classes.
  std::string group_column;  // Tables: report this column's raw value per training example
                             // (LoadedData::train_groups), e.g. to partition a federation.
                             // A loading flag only: not part of ToJson().

  nlohmann::json ToJson() const;
  static Result<DataOptions> FromJson(const nlohmann::json& j);
};

// The options a known data set loads with when the config names nothing else (CSV layout,
// label, schema). Unknown names give plain defaults.
DataOptions DefaultDataOptions(const std::string& dataset);

// Reads `data.*` keys into *out, starting from the defaults of the named data set.
Status ParseDataOptions(Config& cfg, DataOptions* out);

struct TensorData {
  at::Tensor x;  // float32 [N, ...]
  at::Tensor y;  // int64 [N] for classification, float32 [N, horizon] for regression
  // Mixed-size images (DataOptions::resolutions): example i is presented at sides[i] x sides[i];
  // x keeps the native image, rendered at batch time (batch.h). Empty: every example is x's shape.
  std::vector<int64_t> sides;
  // Series windows of mixed history lengths (window.lengths): example i's history is its first
  // lengths[i] steps of x (left-aligned, the rest zeros). Empty: every window is full length.
  std::vector<int64_t> lengths;
  // Distillation (train split): a teacher's outputs for each example, float32 [N, outputs]; the
  // trainer then mixes its loss against them into the task loss. Undefined: plain training.
  at::Tensor teacher;
  int64_t size() const;
};

struct LoadedData {
  TensorData train, val, test;
  Task task = Task::kMulticlass;
  int64_t num_classes = 0;           // 0 for regression
  std::vector<int64_t> input_shape;  // one example, e.g. {1, 28, 28} or {30}
  std::vector<std::string> class_names;
  nlohmann::json preprocessing;  // fitted statistics, format depends on the data kind
  std::string data_sha256;       // over the source files
  std::vector<std::string>
      train_groups;  // with DataOptions::group_column: one per training example
};

// Loads and splits the data. With `fitted` (from a model manifest) the stored statistics are
// applied instead of fitting new ones.
Result<LoadedData> LoadData(const DataOptions& options, const std::string& home,
                            const nlohmann::json* fitted = nullptr);

}  // namespace ronghe::data
