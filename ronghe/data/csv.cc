#include "ronghe/data/csv.h"

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

#include "ronghe/base/file.h"

namespace ronghe::data {

Result<int> CsvTable::ColumnIndex(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return static_cast<int>(i);
  }
  std::string have;
  for (size_t i = 0; i < columns.size() && i < 40; ++i) have += (i ? ", " : "") + columns[i];
  return NotFound(source + ": no column '" + name + "' (columns: " + have + ")");
}

Result<CsvTable> ReadCsv(const std::string& path, const CsvOptions& options) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseCsv(text, path, options);
}

Result<CsvTable> ParseCsv(const std::string& text, const std::string& source,
                          const CsvOptions& options) {
  CsvTable t;
  t.source = source;
  std::vector<std::vector<std::string>> records;
  std::vector<int64_t> lines;
  std::vector<std::string> rec;
  std::string field;
  bool in_quotes = false, field_started = false;
  int64_t line = 1, rec_line = 1;
  auto end_field = [&] {
    rec.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto end_record = [&] {
    end_field();
    if (!(rec.size() == 1 && rec[0].empty())) {  // skip blank lines
      records.push_back(std::move(rec));
      lines.push_back(rec_line);
    }
    rec.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == '"' && !field_started) {
      in_quotes = true;
      field_started = true;
    } else if (c == options.delimiter) {
      end_field();
    } else if (c == '\r') {
      continue;
    } else if (c == '\n') {
      end_record();
      ++line;
      rec_line = line;
    } else {
      field.push_back(c);
      field_started = true;
    }
  }
  if (in_quotes)
    return DataLoss(source + ":" + std::to_string(rec_line) + ": unterminated quoted field");
  if (!field.empty() || !rec.empty()) end_record();

  size_t first = static_cast<size_t>(std::max(options.skip_rows, 0));
  if (records.size() <= first) return DataLoss(source + ": no data rows");
  size_t width;
  if (options.header) {
    t.columns = records[first];
    ++first;
    width = t.columns.size();
  } else {
    width = records[first].size();
    for (size_t i = 0; i < width; ++i) t.columns.push_back("col" + std::to_string(i));
  }
  for (size_t r = first; r < records.size(); ++r) {
    if (records[r].size() != width) {
      return DataLoss(source + ":" + std::to_string(lines[r]) + ": expected " +
                      std::to_string(width) + " fields, found " +
                      std::to_string(records[r].size()));
    }
    t.rows.push_back(std::move(records[r]));
    t.line_of_row.push_back(lines[r]);
  }
  if (t.rows.empty()) return DataLoss(source + ": no data rows");
  return t;
}

int64_t TablePreprocessing::num_features() const {
  int64_t n = static_cast<int64_t>(numeric.size());
  for (const auto& c : categorical) n += static_cast<int64_t>(c.values.size()) + 1;
  return n;
}

nlohmann::json TablePreprocessing::ToJson() const {
  nlohmann::json j;
  j["label"] = label;
  j["classes"] = classes;
  j["missing"] = missing;
  for (const auto& n : numeric)
    j["numeric"].push_back({{"name", n.name}, {"mean", n.mean}, {"std", n.std}});
  for (const auto& c : categorical)
    j["categorical"].push_back({{"name", c.name}, {"values", c.values}});
  if (!j.contains("numeric")) j["numeric"] = nlohmann::json::array();
  if (!j.contains("categorical")) j["categorical"] = nlohmann::json::array();
  return j;
}

Result<TablePreprocessing> TablePreprocessing::FromJson(const nlohmann::json& j) {
  TablePreprocessing p;
  try {
    p.label = j.at("label").get<std::string>();
    p.classes = j.at("classes").get<std::vector<std::string>>();
    p.missing = j.at("missing").get<std::vector<std::string>>();
    for (const auto& n : j.at("numeric")) {
      p.numeric.push_back(
          {n.at("name").get<std::string>(), n.at("mean").get<double>(), n.at("std").get<double>()});
    }
    for (const auto& c : j.at("categorical")) {
      p.categorical.push_back(
          {c.at("name").get<std::string>(), c.at("values").get<std::vector<std::string>>()});
    }
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("table preprocessing: ") + e.what());
  }
  return p;
}

namespace {
bool IsMissing(const std::string& v, const std::vector<std::string>& missing) {
  return std::find(missing.begin(), missing.end(), v) != missing.end();
}
bool ParseDouble(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v)) return false;
  *out = v;
  return true;
}
}  // namespace

Result<TablePreprocessing> FitTable(const CsvTable& table, const TableSchema& schema,
                                    const std::vector<int64_t>& train_rows) {
  if (schema.label.empty()) return InvalidArgument(table.source + ": schema has no label column");
  ASSIGN_OR_RETURN(int label_col, table.ColumnIndex(schema.label));
  std::set<std::string> named(schema.categorical.begin(), schema.categorical.end());
  named.insert(schema.ignore.begin(), schema.ignore.end());
  named.insert(schema.label);
  for (const auto& c : schema.ignore) RETURN_IF_ERROR(table.ColumnIndex(c).status());
  std::vector<std::string> numeric = schema.numeric;
  if (numeric.empty()) {
    for (const auto& c : table.columns) {
      if (!named.count(c)) numeric.push_back(c);
    }
  }
  TablePreprocessing p;
  p.label = schema.label;
  p.missing = schema.missing;
  for (const auto& name : numeric) {
    ASSIGN_OR_RETURN(int col, table.ColumnIndex(name));
    double sum = 0, sq = 0;
    int64_t n = 0;
    for (int64_t r : train_rows) {
      const std::string& v = table.rows[r][col];
      if (IsMissing(v, schema.missing)) continue;
      double x;
      if (!ParseDouble(v, &x)) {
        return DataLoss(table.source + ":" + std::to_string(table.line_of_row[r]) + ": column '" +
                        name + "': '" + v +
                        "' is not a number (declare it categorical or ignore it)");
      }
      sum += x;
      sq += x * x;
      ++n;
    }
    double mean = n ? sum / n : 0;
    double var = n ? std::max(sq / n - mean * mean, 0.0) : 0;
    double sd = std::sqrt(var);
    p.numeric.push_back({name, mean, sd > 1e-12 ? sd : 1.0});
  }
  for (const auto& name : schema.categorical) {
    ASSIGN_OR_RETURN(int col, table.ColumnIndex(name));
    std::set<std::string> values;
    for (int64_t r : train_rows) {
      const std::string& v = table.rows[r][col];
      if (!IsMissing(v, schema.missing)) values.insert(v);
    }
    p.categorical.push_back({name, std::vector<std::string>(values.begin(), values.end())});
  }
  if (!schema.positive.empty()) {
    p.classes = {"not " + schema.positive, schema.positive};
  } else {
    std::set<std::string> classes;
    for (const auto& row : table.rows) classes.insert(row[label_col]);
    p.classes.assign(classes.begin(), classes.end());
  }
  return p;
}

Result<std::vector<int64_t>> EncodeLabels(const CsvTable& table, const TableSchema& schema,
                                          const std::vector<std::string>& classes) {
  ASSIGN_OR_RETURN(int col, table.ColumnIndex(schema.label));
  std::vector<int64_t> y(table.rows.size());
  bool seen_positive = false;
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const std::string& v = table.rows[r][col];
    if (IsMissing(v, schema.missing)) {
      return DataLoss(table.source + ":" + std::to_string(table.line_of_row[r]) + ": label '" +
                      schema.label + "' is missing");
    }
    if (!schema.positive.empty()) {
      y[r] = v == schema.positive;
      seen_positive |= y[r] == 1;
      continue;
    }
    auto it = std::find(classes.begin(), classes.end(), v);
    if (it == classes.end()) {
      return DataLoss(table.source + ":" + std::to_string(table.line_of_row[r]) + ": label '" + v +
                      "' is not one of the known classes");
    }
    y[r] = it - classes.begin();
  }
  if (!schema.positive.empty() && !seen_positive) {
    return InvalidArgument(table.source + ": no row has label " + schema.label + " = '" +
                           schema.positive + "' (check data.positive)");
  }
  return y;
}

Status TransformRow(const TablePreprocessing& prep, const std::string* const* cells, float* out,
                    const std::string& source, int64_t line) {
  const int64_t width = prep.num_features();
  std::fill(out, out + width, 0.0f);
  int64_t k = 0;
  size_t c = 0;
  for (size_t j = 0; j < prep.numeric.size(); ++j, ++k, ++c) {
    const std::string& v = *cells[c];
    double x;
    if (IsMissing(v, prep.missing)) {
      out[k] = 0.0f;  // the training mean, standardised
    } else if (ParseDouble(v, &x)) {
      out[k] = static_cast<float>((x - prep.numeric[j].mean) / prep.numeric[j].std);
    } else {
      return DataLoss(source + (line >= 0 ? ":" + std::to_string(line) : std::string()) +
                      ": column '" + prep.numeric[j].name + "': '" + v.substr(0, 64) +
                      "' is not a number");
    }
  }
  for (size_t j = 0; j < prep.categorical.size(); ++j, ++c) {
    const auto& values = prep.categorical[j].values;
    const std::string& v = *cells[c];
    auto it = std::lower_bound(values.begin(), values.end(), v);
    int64_t slot = (it != values.end() && *it == v) ? it - values.begin()
                                                    : static_cast<int64_t>(values.size());
    out[k + slot] = 1.0f;
    k += static_cast<int64_t>(values.size()) + 1;
  }
  return Status::OK();
}

Result<at::Tensor> TransformTable(const CsvTable& table, const TablePreprocessing& prep,
                                  const std::vector<int64_t>& rows) {
  int64_t width = prep.num_features();
  at::Tensor x = torch::zeros({static_cast<int64_t>(rows.size()), width}, torch::kFloat32);
  float* out = x.data_ptr<float>();
  std::vector<int> cols;
  for (const auto& n : prep.numeric) {
    ASSIGN_OR_RETURN(int c, table.ColumnIndex(n.name));
    cols.push_back(c);
  }
  for (const auto& c : prep.categorical) {
    ASSIGN_OR_RETURN(int col, table.ColumnIndex(c.name));
    cols.push_back(col);
  }
  std::vector<const std::string*> cells(cols.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = table.rows[rows[i]];
    for (size_t j = 0; j < cols.size(); ++j) cells[j] = &row[cols[j]];
    RETURN_IF_ERROR(TransformRow(prep, cells.data(), out + i * width, table.source,
                                 table.line_of_row[rows[i]]));
  }
  return x;
}

}  // namespace ronghe::data
