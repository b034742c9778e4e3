// What a served model takes and gives, derived from its artifact's manifest, and the conversions
// between protocol tensors and the model's batch tensors.
//
// Inputs (one per request; the first dimension is the batch):
//   "input"   FP32  [N, ...input_shape]  features exactly as the model takes them (preprocessed)
//   "pixels"  UINT8 [N, ...input_shape]  images only: raw 0-255 pixels, normalised here with the
//                                        manifest's mean/std as in training
//   "record"  BYTES [N]                  tables only: each element a JSON object of raw column
//                                        values ({"term": "36 months", "int_rate": 11.5, ...}),
//                                        standardised and one-hot encoded with the manifest's
//                                        statistics; a missing column is treated as missing
// Outputs:
//   classification: "probabilities" FP32 [N, classes], "class" INT64 [N], "logits" FP32 [N,
//   outputs] regression:     "prediction" FP32 [N, outputs] (series: in original units)
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/data/csv.h"
#include "ronghe/serve/batcher.h"
#include "ronghe/serve/kserve.h"

namespace ronghe::serve {

class Signature {
 public:
  // InvalidArgument when the manifest lacks what serving needs (model.input_shape, task).
  static Result<Signature> FromManifest(const nlohmann::json& manifest);

  // The request's input as the batcher takes it (rows, row width, where the values are), without
  // a LibTorch tensor: FP32 "input" points into the request itself, "pixels" are normalised by a
  // 256-entry table (the training normalisation, computed once) while the batcher copies them,
  // "record" rows are encoded into `*scratch`. The request (and scratch) must outlive the call.
  // Errors (wrong name, datatype or shape; an unknown category is not an error, it takes the
  // unseen slot) are InvalidArgument naming the input.
  Result<InferRequest> Prepare(const InferRequestMsg& request, std::vector<float>* scratch) const;
  // The same input as a model batch [N, ...input_shape] float32 (for the cascade's row subsets).
  Result<at::Tensor> ToBatch(const InferRequestMsg& request) const;
  // The model's raw output rows (rows x width floats) -> the protocol outputs asked for (all when
  // `names` is empty), computed with plain loops; an unknown name is InvalidArgument.
  Result<std::vector<InferTensor>> FromOutput(const float* logits, int64_t rows, int64_t width,
                                              const std::vector<std::string>& names) const;
  Result<std::vector<InferTensor>> FromOutput(const at::Tensor& logits,
                                              const std::vector<std::string>& names) const;
  // Confidence per row in [0, 1] (classification: the top probability); for the cascade.
  at::Tensor Confidence(const at::Tensor& logits) const;

  // The v2 model-metadata "inputs" and "outputs" arrays.
  nlohmann::json InputsJson() const;
  nlohmann::json OutputsJson() const;
  const std::string& task() const { return task_; }
  bool classification() const { return task_ == "binary" || task_ == "multiclass"; }
  const std::vector<int64_t>& input_shape() const { return input_shape_; }
  const std::vector<std::string>& classes() const { return classes_; }

 private:
  std::string task_;  // "binary" | "multiclass" | "regression"
  std::vector<int64_t> input_shape_;
  int64_t outputs_ = 0;
  std::vector<std::string> classes_;
  nlohmann::json preprocessing_;
  std::string kind_;                // preprocessing kind: "image" | "table" | "series" | ""
  data::TablePreprocessing table_;  // kind_ == "table"
  std::vector<float> pixel_lut_;    // kind_ == "image": byte value -> normalised input
  int64_t row_elements_ = 0;        // product of input_shape
  float series_std_ = 1, series_mean_ = 0;
};

}  // namespace ronghe::serve
