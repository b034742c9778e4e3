#include "ronghe/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ronghe::train {

namespace {
std::vector<size_t> OrderByScoreDesc(const std::vector<float>& s) {
  std::vector<size_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  return idx;
}
}  // namespace

double RocAuc(const std::vector<float>& scores, const std::vector<int64_t>& labels) {
  // Mann-Whitney U over ascending ranks, ties given their average rank.
  size_t n = scores.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double rank_sum = 0;
  int64_t pos = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[idx[j]] == scores[idx[i]]) ++j;
    double avg_rank = (i + 1 + j) / 2.0;  // ranks i+1 .. j
    for (size_t k = i; k < j; ++k) {
      if (labels[idx[k]] == 1) {
        rank_sum += avg_rank;
        ++pos;
      }
    }
    i = j;
  }
  int64_t neg = static_cast<int64_t>(n) - pos;
  if (pos == 0 || neg == 0) return std::nan("");
  return (rank_sum - pos * (pos + 1) / 2.0) / (double(pos) * neg);
}

double AveragePrecision(const std::vector<float>& scores, const std::vector<int64_t>& labels) {
  auto idx = OrderByScoreDesc(scores);
  int64_t total_pos = std::count(labels.begin(), labels.end(), 1);
  if (total_pos == 0) return std::nan("");
  double ap = 0, prev_recall = 0;
  int64_t tp = 0, seen = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    // Thresholds sit between distinct scores: a tie group enters at once.
    while (j < idx.size() && scores[idx[j]] == scores[idx[i]]) {
      tp += labels[idx[j]] == 1;
      ++seen;
      ++j;
    }
    double recall = double(tp) / total_pos;
    double precision = double(tp) / seen;
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
    i = j;
  }
  return ap;
}

MetricMap BinaryMetrics(const std::vector<float>& scores, const std::vector<int64_t>& labels,
                        double threshold) {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    bool pred = scores[i] >= threshold;
    bool pos = labels[i] == 1;
    tp += pred && pos;
    fp += pred && !pos;
    tn += !pred && !pos;
    fn += !pred && pos;
  }
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  double precision = ratio(tp, tp + fp), recall = ratio(tp, tp + fn);
  return {
      {"accuracy", ratio(tp + tn, tp + tn + fp + fn)},
      {"precision", precision},
      {"recall", recall},
      {"fpr", ratio(fp, fp + tn)},
      {"f1", ratio(2 * precision * recall, precision + recall)},
      {"roc_auc", RocAuc(scores, labels)},
      {"pr_auc", AveragePrecision(scores, labels)},
  };
}

MetricMap MulticlassMetrics(const std::vector<int64_t>& predicted,
                            const std::vector<int64_t>& labels) {
  int64_t right = 0;
  for (size_t i = 0; i < labels.size(); ++i) right += predicted[i] == labels[i];
  return {{"accuracy", labels.empty() ? 0.0 : double(right) / labels.size()}};
}

MetricMap RegressionMetrics(const std::vector<double>& predicted,
                            const std::vector<double>& actual) {
  double abs_sum = 0, sq_sum = 0, pct_sum = 0;
  int64_t pct_n = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double e = predicted[i] - actual[i];
    abs_sum += std::fabs(e);
    sq_sum += e * e;
    if (actual[i] != 0) {
      pct_sum += std::fabs(e / actual[i]);
      ++pct_n;
    }
  }
  double n = std::max<double>(actual.size(), 1);
  return {{"mae", abs_sum / n},
          {"rmse", std::sqrt(sq_sum / n)},
          {"mape", pct_n ? 100.0 * pct_sum / pct_n : std::nan("")}};
}

}  // namespace ronghe::train
