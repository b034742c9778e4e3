#include "ronghe/data/source.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "ronghe/base/file.h"
#include "ronghe/base/hash.h"
#include "ronghe/data/datasets.h"
#include "ronghe/data/idx.h"
#include "ronghe/data/split.h"

namespace ronghe::data {

const char* TaskName(Task t) {
  switch (t) {
    case Task::kBinary:
      return "binary";
    case Task::kMulticlass:
      return "multiclass";
    case Task::kRegression:
      return "regression";
  }
  return "?";
}

Result<Task> ParseTask(const std::string& s) {
  if (s == "binary") return Task::kBinary;
  if (s == "multiclass") return Task::kMulticlass;
  if (s == "regression") return Task::kRegression;
  return InvalidArgument("unknown task '" + s + "' (binary, multiclass, regression)");
}

int64_t TensorData::size() const { return x.defined() ? x.size(0) : 0; }

namespace {

enum class Kind { kIdx, kTable, kSeries };

Kind KindOf(const std::string& dataset) {
  if (dataset == "fashion-mnist") return Kind::kIdx;
  if (dataset == "taylor" || dataset == "gretl_load") return Kind::kSeries;
  return Kind::kTable;
}

// Defaults that make each known set load with no schema in the config.
void ApplyDatasetDefaults(DataOptions* o) {
  if (o->dataset == "breast_cancer") {
    o->csv.header = false;
    o->csv.skip_rows = 1;  // first line is "569,30,malignant,benign", not a header
    o->schema.label = "col30";
    o->schema.positive = "0";  // 0 = malignant
  } else if (o->dataset == "lending_club") {
    o->schema.label = "Class";
    o->schema.positive = "bad";
    o->schema.categorical = {"term", "sub_grade", "addr_state", "verification_status",
                             "emp_length"};
  } else if (o->dataset == "sensor") {
    o->schema.label = "label";
    o->schema.positive = "1";
    o->schema.ignore = {"reading", "mote_id"};
  } else if (o->dataset == "taylor") {
    o->column = "demand";
  } else if (o->dataset == "gretl_load") {
    o->column = "load";
    o->covariates = {"temp"};
    o->window.input = 24;  // a day of hours
  }
}

}  // namespace

nlohmann::json DataOptions::ToJson() const {
  return {
      {"dataset", dataset},
      {"path", path},
      {"header", csv.header},
      {"skip_rows", csv.skip_rows},
      {"label", schema.label},
      {"positive", schema.positive},
      {"numeric", schema.numeric},
      {"categorical", schema.categorical},
      {"ignore", schema.ignore},
      {"missing", schema.missing},
      {"column", column},
      {"covariates", covariates},
      {"window",
       {{"input", window.input},
        {"horizon", window.horizon},
        {"stride", window.stride},
        {"lengths", window.lengths}}},
      {"split", split},
      {"val_fraction", val_fraction},
      {"seed", seed},
      {"limit_train", limit_train},
      {"resolutions", resolutions},
      {"holdout_classes", holdout_classes},
  };
}

Result<DataOptions> DataOptions::FromJson(const nlohmann::json& j) {
  DataOptions o;
  try {
    o.dataset = j.at("dataset").get<std::string>();
    o.path = j.at("path").get<std::string>();
    o.csv.header = j.at("header").get<bool>();
    o.csv.skip_rows = j.at("skip_rows").get<int>();
    o.schema.label = j.at("label").get<std::string>();
    o.schema.positive = j.at("positive").get<std::string>();
    o.schema.numeric = j.at("numeric").get<std::vector<std::string>>();
    o.schema.categorical = j.at("categorical").get<std::vector<std::string>>();
    o.schema.ignore = j.at("ignore").get<std::vector<std::string>>();
    o.schema.missing = j.at("missing").get<std::vector<std::string>>();
    o.column = j.at("column").get<std::string>();
    o.covariates = j.value("covariates", std::vector<std::string>{});
    o.window.input = j.at("window").at("input").get<int64_t>();
    o.window.horizon = j.at("window").at("horizon").get<int64_t>();
    o.window.stride = j.at("window").at("stride").get<int64_t>();
    o.window.lengths = j.at("window").value("lengths", std::vector<int64_t>{});
    o.split = j.at("split").get<std::vector<double>>();
    o.val_fraction = j.at("val_fraction").get<double>();
    o.seed = j.at("seed").get<uint64_t>();
    o.limit_train = j.at("limit_train").get<int64_t>();
    // Absent from manifests written before mixed resolutions existed.
    o.resolutions = j.value("resolutions", std::vector<int64_t>{});
    o.holdout_classes = j.value("holdout_classes", std::vector<std::string>{});
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("data options: ") + e.what());
  }
  return o;
}

DataOptions DefaultDataOptions(const std::string& dataset) {
  DataOptions o;
  o.dataset = dataset;
  ApplyDatasetDefaults(&o);
  return o;
}

Status ParseDataOptions(Config& cfg, DataOptions* o) {
  RETURN_IF_ERROR(cfg.GetRequired("data.dataset", &o->dataset));
  if (o->dataset != "csv") {
    auto info = FindDataset(o->dataset);
    if (!info.ok()) return cfg.ValueError("data.dataset", info.status().message() + " or \"csv\"");
    if (!info->trainable) {
      return cfg.ValueError("data.dataset", o->dataset + " is media for cameras (ronghe stream), " +
                                                "not a training set");
    }
  }
  ApplyDatasetDefaults(o);
  Kind kind = KindOf(o->dataset);
  RETURN_IF_ERROR(cfg.Get("data.path", &o->path));
  if (o->dataset == "csv" && o->path.empty()) {
    return cfg.ValueError("data.dataset", "dataset \"csv\" needs data.path");
  }
  int64_t seed = static_cast<int64_t>(o->seed);
  RETURN_IF_ERROR(cfg.Get("data.seed", &seed));
  o->seed = static_cast<uint64_t>(seed);
  RETURN_IF_ERROR(cfg.Get("data.limit_train", &o->limit_train));
  if (o->limit_train < 0) return cfg.ValueError("data.limit_train", "must be >= 0");

  if (kind == Kind::kIdx) {
    if (cfg.Has("data.split")) {
      return cfg.ValueError("data.split",
                            o->dataset + " has an official test set; use data.val_fraction");
    }
    RETURN_IF_ERROR(cfg.Get("data.val_fraction", &o->val_fraction));
    if (o->val_fraction < 0 || o->val_fraction >= 1) {
      return cfg.ValueError("data.val_fraction", "must lie in [0, 1)");
    }
    RETURN_IF_ERROR(cfg.Get("data.resolutions", &o->resolutions));
    for (size_t i = 0; i < o->resolutions.size(); ++i) {
      if (o->resolutions[i] < 8 || o->resolutions[i] > 1024) {
        return cfg.ValueError("data.resolutions", "sides must lie in 8..1024 pixels");
      }
      for (size_t j = 0; j < i; ++j) {
        if (o->resolutions[j] == o->resolutions[i])
          return cfg.ValueError("data.resolutions", "a side is listed twice");
      }
    }
    RETURN_IF_ERROR(cfg.Get("data.holdout_classes", &o->holdout_classes));
    return Status::OK();
  }
  if (cfg.Has("data.resolutions"))
    return cfg.ValueError("data.resolutions", "applies to image data sets only");
  if (cfg.Has("data.holdout_classes"))
    return cfg.ValueError("data.holdout_classes", "applies to image data sets only");
  RETURN_IF_ERROR(cfg.Get("data.split", &o->split));
  if (o->split.size() != 3) return cfg.ValueError("data.split", "expected [train, val, test]");
  double sum = 0;
  for (double f : o->split) {
    if (f < 0) return cfg.ValueError("data.split", "fractions must be >= 0");
    sum += f;
  }
  if (std::fabs(sum - 1) > 1e-6) return cfg.ValueError("data.split", "fractions must sum to 1");
  if (o->split[0] <= 0 || o->split[2] <= 0) {
    return cfg.ValueError("data.split", "train and test fractions must be > 0");
  }
  if (kind == Kind::kSeries) {
    RETURN_IF_ERROR(cfg.Get("data.column", &o->column));
    RETURN_IF_ERROR(cfg.Get("data.covariates", &o->covariates));
    for (const std::string& c : o->covariates) {
      if (c == o->column)
        return cfg.ValueError("data.covariates", "'" + c + "' is the value column itself");
    }
    RETURN_IF_ERROR(cfg.Get("data.window.input", &o->window.input));
    RETURN_IF_ERROR(cfg.Get("data.window.horizon", &o->window.horizon));
    RETURN_IF_ERROR(cfg.Get("data.window.stride", &o->window.stride));
    if (o->window.input < 1) return cfg.ValueError("data.window.input", "must be >= 1");
    if (o->window.horizon < 1) return cfg.ValueError("data.window.horizon", "must be >= 1");
    if (o->window.stride < 1) return cfg.ValueError("data.window.stride", "must be >= 1");
    RETURN_IF_ERROR(cfg.Get("data.window.lengths", &o->window.lengths));
    for (size_t i = 0; i < o->window.lengths.size(); ++i) {
      if (o->window.lengths[i] < 1 || o->window.lengths[i] > o->window.input) {
        return cfg.ValueError("data.window.lengths",
                              "each length must lie in 1..data.window.input (" +
                                  std::to_string(o->window.input) + ")");
      }
      for (size_t j = 0; j < i; ++j) {
        if (o->window.lengths[j] == o->window.lengths[i])
          return cfg.ValueError("data.window.lengths", "a length is listed twice");
      }
    }
    return Status::OK();
  }
  RETURN_IF_ERROR(cfg.Get("data.header", &o->csv.header));
  RETURN_IF_ERROR(cfg.Get("data.skip_rows", &o->csv.skip_rows));
  RETURN_IF_ERROR(cfg.Get("data.label", &o->schema.label));
  RETURN_IF_ERROR(cfg.Get("data.positive", &o->schema.positive));
  RETURN_IF_ERROR(cfg.Get("data.numeric", &o->schema.numeric));
  RETURN_IF_ERROR(cfg.Get("data.categorical", &o->schema.categorical));
  RETURN_IF_ERROR(cfg.Get("data.ignore", &o->schema.ignore));
  RETURN_IF_ERROR(cfg.Get("data.missing", &o->schema.missing));
  if (o->schema.label.empty()) return cfg.ValueError("data.label", "a table needs a label column");
  return Status::OK();
}

namespace {

Result<std::string> HashFiles(const std::vector<std::string>& paths) {
  Sha256Hasher h;
  for (const auto& p : paths) {
    ASSIGN_OR_RETURN(std::string hex, Sha256FileHex(p));
    h.Update(hex.data(), hex.size());
  }
  return h.FinalHex();
}

std::vector<int64_t> Limit(std::vector<int64_t> idx, int64_t limit) {
  if (limit > 0 && static_cast<int64_t>(idx.size()) > limit) idx.resize(limit);
  return idx;
}

at::Tensor IndexTensor(const std::vector<int64_t>& idx) {
  return torch::from_blob(const_cast<int64_t*>(idx.data()), {static_cast<int64_t>(idx.size())},
                          torch::kInt64)
      .clone();
}

// Mean and standard deviation stored in a manifest's preprocessing section.
Status ReadMeanStd(const nlohmann::json& fitted, const char* kind, double* mean, double* sd) {
  try {
    *mean = fitted.at("mean").get<double>();
    *sd = fitted.at("std").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string(kind) + " preprocessing: " + e.what());
  }
  if (!(*sd > 0)) return DataLoss(std::string(kind) + " preprocessing: std must be > 0");
  return Status::OK();
}

// The seeded rule that picks an example's size (an image's side, a window's length) from
// `choices`: splitmix64 of (seed, the example's index in the source), so an example keeps its
// size whatever the split, limit or process reading it.
std::vector<int64_t> PickSizes(const std::vector<int64_t>& source_index, int64_t offset,
                               const std::vector<int64_t>& choices, uint64_t seed) {
  std::vector<int64_t> sides;
  if (choices.empty()) return sides;
  sides.reserve(source_index.size());
  for (int64_t k : source_index) {
    uint64_t z =
        seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(k + offset) + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    sides.push_back(choices[z % choices.size()]);
  }
  return sides;
}

// Drops the examples of `names` from every split and renumbers the remaining classes in order.
Status HoldOutClasses(const std::vector<std::string>& names, LoadedData* d) {
  if (names.empty()) return Status::OK();
  std::vector<int64_t> remap(d->class_names.size(), -1);
  std::vector<std::string> kept;
  for (const auto& n : names) {
    if (std::find(d->class_names.begin(), d->class_names.end(), n) == d->class_names.end()) {
      std::string all;
      for (const auto& c : d->class_names) all += (all.empty() ? "" : ", ") + c;
      return InvalidArgument("data.holdout_classes: no class '" + n + "' (classes: " + all + ")");
    }
  }
  for (size_t c = 0; c < d->class_names.size(); ++c) {
    if (std::find(names.begin(), names.end(), d->class_names[c]) != names.end()) continue;
    remap[c] = static_cast<int64_t>(kept.size());
    kept.push_back(d->class_names[c]);
  }
  if (kept.size() < 2) return InvalidArgument("data.holdout_classes: fewer than two classes left");
  at::Tensor map = torch::tensor(remap, torch::kInt64);
  for (TensorData* t : {&d->train, &d->val, &d->test}) {
    at::Tensor y = map.index_select(0, t->y);
    at::Tensor keep = y.ge(0).nonzero().squeeze(1);
    if (!t->sides.empty()) {
      std::vector<int64_t> sides;
      const int64_t* k = keep.data_ptr<int64_t>();
      for (int64_t i = 0; i < keep.size(0); ++i)
        sides.push_back(t->sides[static_cast<size_t>(k[i])]);
      t->sides = std::move(sides);
    }
    t->x = t->x.index_select(0, keep);
    t->y = y.index_select(0, keep);
  }
  d->class_names = kept;
  d->num_classes = static_cast<int64_t>(kept.size());
  return Status::OK();
}

Result<LoadedData> LoadIdx(const DataOptions& o, const std::string& dir,
                           const nlohmann::json* fitted) {
  auto p = [&](const char* f) { return dir + "/" + f; };
  ASSIGN_OR_RETURN(at::Tensor train_x, ReadIdx(p("train-images-idx3-ubyte.gz")));
  ASSIGN_OR_RETURN(at::Tensor train_y, ReadIdx(p("train-labels-idx1-ubyte.gz")));
  ASSIGN_OR_RETURN(at::Tensor test_x, ReadIdx(p("t10k-images-idx3-ubyte.gz")));
  ASSIGN_OR_RETURN(at::Tensor test_y, ReadIdx(p("t10k-labels-idx1-ubyte.gz")));
  if (train_x.dim() != 3 || test_x.dim() != 3 || train_y.dim() != 1 || test_y.dim() != 1 ||
      train_x.size(0) != train_y.size(0) || test_x.size(0) != test_y.size(0)) {
    return DataLoss(dir + ": image and label files disagree in shape");
  }
  LoadedData d;
  d.task = Task::kMulticlass;
  d.num_classes = 10;
  ASSIGN_OR_RETURN(DatasetInfo info, FindDataset(o.dataset));
  d.class_names = info.classes;
  d.input_shape = {1, train_x.size(1), train_x.size(2)};
  ASSIGN_OR_RETURN(d.data_sha256,
                   HashFiles({p("train-images-idx3-ubyte.gz"), p("train-labels-idx1-ubyte.gz"),
                              p("t10k-images-idx3-ubyte.gz"), p("t10k-labels-idx1-ubyte.gz")}));
  ASSIGN_OR_RETURN(SplitIndices s,
                   SplitSeeded(train_x.size(0), {1 - o.val_fraction, o.val_fraction, 0}, o.seed));
  std::vector<int64_t> train_idx = Limit(s.train, o.limit_train);
  at::Tensor tr = IndexTensor(train_idx), va = IndexTensor(s.val);
  auto to_float = [](const at::Tensor& t) {
    return t.to(torch::kFloat32).div_(255.0f).unsqueeze(1);
  };
  at::Tensor xtr = to_float(train_x.index_select(0, tr));
  double mean, sd;
  if (fitted) {
    RETURN_IF_ERROR(ReadMeanStd(*fitted, "image", &mean, &sd));
  } else {
    mean = xtr.mean().item<double>();
    sd = xtr.std().item<double>();
  }
  d.preprocessing = {{"kind", "image"}, {"mean", mean}, {"std", sd}, {"scale", 1.0 / 255}};
  auto norm = [&](at::Tensor t) { return t.sub_(mean).div_(sd); };
  d.train = {norm(xtr), train_y.index_select(0, tr).to(torch::kInt64)};
  d.val = {norm(to_float(train_x.index_select(0, va))),
           train_y.index_select(0, va).to(torch::kInt64)};
  d.test = {norm(to_float(test_x)), test_y.to(torch::kInt64)};
  std::vector<int64_t> test_idx(test_x.size(0));
  for (size_t i = 0; i < test_idx.size(); ++i) test_idx[i] = static_cast<int64_t>(i);
  d.train.sides = PickSizes(train_idx, 0, o.resolutions, o.seed);
  d.val.sides = PickSizes(s.val, 0, o.resolutions, o.seed);
  d.test.sides = PickSizes(test_idx, train_x.size(0), o.resolutions, o.seed);
  RETURN_IF_ERROR(HoldOutClasses(o.holdout_classes, &d));
  return d;
}

Result<LoadedData> LoadTable(const DataOptions& o, const std::string& path,
                             const nlohmann::json* fitted) {
  ASSIGN_OR_RETURN(CsvTable table, ReadCsv(path, o.csv));
  LoadedData d;
  ASSIGN_OR_RETURN(d.data_sha256, HashFiles({path}));
  // Labels first (for a stratified split); classes come from the whole column, which is not a
  // leak: the set of label values says nothing about features.
  TableSchema schema = o.schema;
  std::vector<std::string> classes;
  if (schema.positive.empty()) {
    ASSIGN_OR_RETURN(int col, table.ColumnIndex(schema.label));
    std::set<std::string> cs;
    for (const auto& r : table.rows) cs.insert(r[col]);
    classes.assign(cs.begin(), cs.end());
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> labels, EncodeLabels(table, schema, classes));
  ASSIGN_OR_RETURN(SplitIndices s,
                   SplitSeeded(static_cast<int64_t>(table.rows.size()), o.split, o.seed, &labels));
  s.train = Limit(s.train, o.limit_train);
  TablePreprocessing prep;
  if (fitted) {
    ASSIGN_OR_RETURN(prep, TablePreprocessing::FromJson(*fitted));
  } else {
    ASSIGN_OR_RETURN(prep, FitTable(table, schema, s.train));
  }
  if (!schema.positive.empty()) {
    d.task = Task::kBinary;
    d.num_classes = 2;
  } else {
    d.task = Task::kMulticlass;
    d.num_classes = static_cast<int64_t>(prep.classes.size());
    if (prep.classes != classes) return DataLoss(path + ": label classes differ from the model's");
  }
  d.class_names = prep.classes;
  d.input_shape = {prep.num_features()};
  d.preprocessing = prep.ToJson();
  d.preprocessing["kind"] = "table";
  auto make = [&](const std::vector<int64_t>& rows) -> Result<TensorData> {
    ASSIGN_OR_RETURN(at::Tensor x, TransformTable(table, prep, rows));
    std::vector<int64_t> y;
    y.reserve(rows.size());
    for (int64_t r : rows) y.push_back(labels[r]);
    return TensorData{x, IndexTensor(y)};
  };
  ASSIGN_OR_RETURN(d.train, make(s.train));
  if (!o.group_column.empty()) {
    ASSIGN_OR_RETURN(int gcol, table.ColumnIndex(o.group_column));
    for (int64_t r : s.train) d.train_groups.push_back(table.rows[r][gcol]);
  }
  ASSIGN_OR_RETURN(d.val, make(s.val));
  ASSIGN_OR_RETURN(d.test, make(s.test));
  return d;
}

Result<LoadedData> LoadSeries(const DataOptions& o, const std::string& path,
                              const nlohmann::json* fitted) {
  CsvOptions csv;
  ASSIGN_OR_RETURN(CsvTable table, ReadCsv(path, csv));
  std::vector<std::string> names = {o.column};
  names.insert(names.end(), o.covariates.begin(), o.covariates.end());
  std::vector<std::vector<double>> values(names.size());
  for (size_t c = 0; c < names.size(); ++c) {
    ASSIGN_OR_RETURN(int col, table.ColumnIndex(names[c]));
    values[c].reserve(table.rows.size());
    for (size_t r = 0; r < table.rows.size(); ++r) {
      const std::string& v = table.rows[r][col];
      char* end = nullptr;
      double x = std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x)) {
        return DataLoss(path + ":" + std::to_string(table.line_of_row[r]) + ": column '" +
                        names[c] + "': '" + v + "' is not a number");
      }
      values[c].push_back(x);
    }
  }
  const std::vector<double>& series = values[0];
  auto n = static_cast<int64_t>(series.size());
  int64_t train_end = static_cast<int64_t>(std::llround(o.split[0] * n));
  int64_t val_end = train_end + static_cast<int64_t>(std::llround(o.split[1] * n));
  LoadedData d;
  d.task = Task::kRegression;
  d.input_shape = {o.window.input, static_cast<int64_t>(names.size())};
  ASSIGN_OR_RETURN(d.data_sha256, HashFiles({path}));
  std::vector<SeriesColumn> columns(names.size());
  nlohmann::json covariates = nlohmann::json::array();
  for (size_t c = 0; c < names.size(); ++c) {
    double mean = 0, sd = 0;
    if (fitted && c == 0) {
      RETURN_IF_ERROR(ReadMeanStd(*fitted, "series", &mean, &sd));
    } else if (fitted) {
      nlohmann::json stored;
      const nlohmann::json all = fitted->value("covariates", nlohmann::json::array());
      for (const auto& cv : all) {
        if (cv.is_object() && cv.value("column", "") == names[c]) stored = cv;
      }
      if (stored.is_null())
        return DataLoss("series preprocessing: no statistics for covariate '" + names[c] + "'");
      RETURN_IF_ERROR(ReadMeanStd(stored, "series covariate", &mean, &sd));
    } else {
      const std::vector<double>& v = values[c];
      for (int64_t i = 0; i < train_end; ++i) mean += v[i];
      mean /= std::max<int64_t>(train_end, 1);
      for (int64_t i = 0; i < train_end; ++i) sd += (v[i] - mean) * (v[i] - mean);
      sd = std::sqrt(sd / std::max<int64_t>(train_end, 1));
      if (sd < 1e-12) sd = 1;
    }
    columns[c] = {&values[c], mean, sd};
    if (c > 0) covariates.push_back({{"column", names[c]}, {"mean", mean}, {"std", sd}});
  }
  d.preprocessing = {
      {"kind", "series"}, {"mean", columns[0].mean}, {"std", columns[0].std}, {"column", o.column}};
  if (!o.covariates.empty()) d.preprocessing["covariates"] = covariates;
  auto windows = [&](int64_t b, int64_t e) -> Result<TensorData> {
    ASSIGN_OR_RETURN(auto xy, MakeWindows(columns, b, e, o.window));
    TensorData t{xy.first, xy.second};
    if (!o.window.lengths.empty()) {
      // Window w starts at b + w * stride; it keeps its most recent L points, left-aligned.
      std::vector<int64_t> start(t.size());
      for (int64_t w = 0; w < t.size(); ++w) start[w] = b + w * o.window.stride;
      t.lengths = PickSizes(start, 0, o.window.lengths, o.seed);
      at::Tensor shifted = torch::zeros_like(t.x);
      for (int64_t w = 0; w < t.size(); ++w) {
        int64_t len = t.lengths[w];
        shifted[w].narrow(0, 0, len).copy_(t.x[w].narrow(0, o.window.input - len, len));
      }
      t.x = shifted;
    }
    return TensorData{t};
  };
  ASSIGN_OR_RETURN(d.train, windows(0, train_end));
  if (o.limit_train > 0 && d.train.size() > o.limit_train) {
    std::vector<int64_t> lengths = d.train.lengths;
    if (!lengths.empty()) lengths.resize(o.limit_train);
    d.train = {
        d.train.x.narrow(0, 0, o.limit_train), d.train.y.narrow(0, 0, o.limit_train), {}, lengths};
  }
  // Validation and test windows start `input` points early so their history is complete; their
  // targets stay inside their own segment.
  int64_t back = o.window.input;
  ASSIGN_OR_RETURN(d.val, windows(std::max<int64_t>(train_end - back, 0), val_end));
  ASSIGN_OR_RETURN(d.test, windows(std::max<int64_t>(val_end - back, 0), n));
  return d;
}

}  // namespace

Result<LoadedData> LoadData(const DataOptions& o, const std::string& home,
                            const nlohmann::json* fitted) {
  try {
    if (o.dataset == "csv") {
      if (!FileExists(o.path)) return NotFound(o.path + ": no such data file");
      return LoadTable(o, o.path, fitted);
    }
    RETURN_IF_ERROR(CheckDatasetPresent(home, o.dataset));
    ASSIGN_OR_RETURN(DatasetInfo info, FindDataset(o.dataset));
    std::string dir = DatasetDir(home, o.dataset);
    switch (KindOf(o.dataset)) {
      case Kind::kIdx:
        return LoadIdx(o, dir, fitted);
      case Kind::kSeries:
        return LoadSeries(o, dir + "/" + info.files[0], fitted);
      case Kind::kTable:
        return LoadTable(o, dir + "/" + info.files[0], fitted);
    }
  } catch (const c10::Error& e) {
    return Internal(std::string("loading ") + o.dataset + ": " + e.what_without_backtrace());
  }
  return Internal("unreachable");
}

}  // namespace ronghe::data
