// The data sets ronghe knows by name, where `ronghe data fetch` puts them, and the check that
// turns "file not found" into "run `ronghe data fetch NAME`".
#pragma once

#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::data {

struct DatasetInfo {
  std::string name;
  std::string description;
  std::string source;  // Debian or npm package it comes from
  std::string license;
  std::vector<std::string> files;    // under $RONGHE_HOME/data/<name>/
  std::vector<std::string> classes;  // label names by index, where the set has them
  bool trainable = true;             // false: media for other systems (cameras), not `ronghe train`
};

const std::vector<DatasetInfo>& KnownDatasets();
Result<DatasetInfo> FindDataset(const std::string& name);

// $home/data/<name>
std::string DatasetDir(const std::string& home, const std::string& name);

// Checks every file of the set is present; otherwise FailedPrecondition naming the missing file
// and the command that fetches it.
Status CheckDatasetPresent(const std::string& home, const std::string& name);

}  // namespace ronghe::data
