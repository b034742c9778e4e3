// Evaluation metrics. Binary: accuracy, precision, recall, FPR, F1 at a threshold, ROC-AUC (rank
// statistic, ties averaged) and PR-AUC (average precision, as scikit-learn computes it).
// Multi-class: top-1 accuracy. Forecasting: MAE, RMSE, MAPE in the series' own units.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ronghe::train {

using MetricMap = std::map<std::string, double>;

// scores: probability of the positive class; labels: 0/1.
MetricMap BinaryMetrics(const std::vector<float>& scores, const std::vector<int64_t>& labels,
                        double threshold = 0.5);
double RocAuc(const std::vector<float>& scores, const std::vector<int64_t>& labels);
double AveragePrecision(const std::vector<float>& scores, const std::vector<int64_t>& labels);

// predictions and labels are class ids.
MetricMap MulticlassMetrics(const std::vector<int64_t>& predicted,
                            const std::vector<int64_t>& labels);

// Values in original units. MAPE skips targets that are exactly 0.
MetricMap RegressionMetrics(const std::vector<double>& predicted,
                            const std::vector<double>& actual);

}  // namespace ronghe::train
