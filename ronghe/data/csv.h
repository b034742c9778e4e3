// CSV reading (RFC 4180 quoting) and tables with a declared schema: typed numeric and
// categorical columns, a label, missing values, and preprocessing fitted on the training rows
// only (so no statistic of the validation or test split leaks into training).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::data {

struct CsvOptions {
  bool header = true;  // Default: true. The first (non-skipped) line names the columns.
  int skip_rows = 0;   // Default: 0. Lines dropped before the header/data (breast_cancer: 1).
  char delimiter = ',';
};

struct CsvTable {
  std::string source;                // path, for errors
  std::vector<std::string> columns;  // names; "col0", "col1", ... without a header
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> line_of_row;  // 1-based line in the file, for errors

  // Index of a column, or NotFound naming the column, the file and the columns there are.
  Result<int> ColumnIndex(const std::string& name) const;
};

Result<CsvTable> ReadCsv(const std::string& path, const CsvOptions& options = {});
Result<CsvTable> ParseCsv(const std::string& text, const std::string& source,
                          const CsvOptions& options = {});

struct TableSchema {
  std::string label;                     // label column (required)
  std::string positive;                  // binary: the label value that means 1 ("bad")
  std::vector<std::string> numeric;      // empty: every column not named elsewhere
  std::vector<std::string> categorical;  // one-hot encoded, plus one slot for unseen/missing
  std::vector<std::string> ignore;
  std::vector<std::string> missing = {"", "NA", "NaN", "nan", "?"};  // values that mean missing
};

// Statistics fitted on the training rows, stored in the model manifest so that evaluation and
// serving transform inputs exactly as training did.
struct TablePreprocessing {
  struct Numeric {
    std::string name;
    double mean = 0, std = 1;
  };
  struct Categorical {
    std::string name;
    std::vector<std::string> values;
  };
  std::vector<Numeric> numeric;
  std::vector<Categorical> categorical;
  std::string label;
  std::vector<std::string> classes;  // label values, index = class id
  std::vector<std::string> missing;  // cell values read as missing
  int64_t num_features() const;

  nlohmann::json ToJson() const;
  static Result<TablePreprocessing> FromJson(const nlohmann::json& j);
};

// Fits preprocessing on `train_rows`. Missing numeric values are imputed with the training mean
// (0 after standardising); a constant column gets std 1.
Result<TablePreprocessing> FitTable(const CsvTable& table, const TableSchema& schema,
                                    const std::vector<int64_t>& train_rows);

// Label ids per row (binary: 1 for `schema.positive`; multi-class: index in `classes`).
// Unknown or missing labels are an error naming file and line.
Result<std::vector<int64_t>> EncodeLabels(const CsvTable& table, const TableSchema& schema,
                                          const std::vector<std::string>& classes);

// One row's features into out[0, num_features): cells[i] is the row's value for feature column
// i, numeric columns first (prep.numeric order), then categorical ones. A missing numeric value
// becomes the training mean (0 once standardised); a category not seen in training the extra
// slot. The transform training, evaluation and serving share. A numeric cell that is not a
// number: DataLoss "SOURCE[:LINE]: column 'c': 'v' is not a number" (LINE when >= 0).
Status TransformRow(const TablePreprocessing& prep, const std::string* const* cells, float* out,
                    const std::string& source, int64_t line);

// Features [rows, num_features] float32 for the given rows.
Result<at::Tensor> TransformTable(const CsvTable& table, const TablePreprocessing& prep,
                                  const std::vector<int64_t>& rows);

}  // namespace ronghe::data
