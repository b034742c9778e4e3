// A/B experiments: a model's default traffic split between variants (versions or aliases) by
// weight, sticky by a request key; every answered request and every feedback label is recorded
// in the run store's database, and a verdict compares the variants with stated tests:
//   latency  - Mann-Whitney U (two-sided, normal approximation with tie correction)
//   outcome  - two-proportion z-test on the share of feedback labels equal to 1
// Verdict (alpha 0.05, at least 30 labels per variant): promote when the challenger's outcome
// rate is significantly higher and it is not slower both significantly and materially (median
// more than 10% above the control's); rollback when its outcome rate is significantly lower.
// Decisions (promote / rollback) are rows in the store too, so `ronghe experiments promote` from
// any shell reaches every server on that store within `refresh_s`.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/serve/repository.h"

namespace ronghe::serve {

struct VariantReport {
  std::string variant;  // the label in the config ("champion", "2", ...)
  int64_t requests = 0;
  int64_t errors = 0;
  double p50_ms = 0, p99_ms = 0, mean_ms = 0;
  int64_t feedback = 0;   // requests with an outcome label
  int64_t positives = 0;  // outcome == 1
};

struct ExperimentReport {
  std::string name, model, status, decided_variant;
  std::vector<std::string> variants;
  std::vector<double> weights;
  std::vector<VariantReport> stats;
  // Control (variant 0) against the best other variant by outcome (else the second one).
  int compared = 1;
  double latency_z = 0, latency_p = 1;  // Mann-Whitney U on successful requests' latency
  double outcome_z = 0, outcome_p = 1;  // two-proportion z-test on outcome rates
  std::string verdict;                  // "promote", "rollback" or "continue"
  std::string reason;
};

struct ExperimentTestResult {
  double z = 0, p = 1;
};
// Exposed for tests against published values.
ExperimentTestResult MannWhitneyU(const std::vector<double>& a, const std::vector<double>& b);
ExperimentTestResult TwoProportionZ(int64_t x1, int64_t n1, int64_t x2, int64_t n2);

// The report as JSON, for the HTTP endpoint and `ronghe experiments show --json` alike.
nlohmann::json ReportJson(const ExperimentReport& report);

class Experiments {
 public:
  // `db_path` "" keeps everything in memory (nothing survives the process).
  static Result<std::unique_ptr<Experiments>> Open(const std::string& db_path);
  ~Experiments();  // flushes what is queued

  // Makes sure the experiment exists in the store (keeps its decision if it has one).
  Status Register(const std::string& model, const ExperimentSettings& e);
  // The variant index to use for a request: the decided variant once decided, else weighted by
  // a hash of (experiment, key) when the key is given (sticky), else at random.
  int Pick(const ExperimentSettings& e, const std::string& key);
  // Queues one answered request; written in batches by a background thread. Once the experiment
  // is decided, requests only count in Counters(): the stored evidence ends with the decision.
  void Record(const std::string& experiment, const std::string& variant,
              const std::string& request_id, double latency_s, bool ok);
  // An outcome label (0 or 1) for an earlier request of the experiment.
  Status Feedback(const std::string& experiment, const std::string& request_id, double outcome);
  Result<ExperimentReport> Report(const std::string& name);
  std::vector<std::string> List();
  // Ends the experiment: every later request goes to `variant` (promote: the challenger;
  // rollback: the control).
  Status Decide(const std::string& name, const std::string& status, const std::string& variant);
  // Promote or roll back, as `ronghe experiments promote|rollback` and the HTTP endpoint do:
  // `variant` "" = the report's compared challenger (promote) or the control (rollback).
  // Returns the variant that now takes all default traffic.
  Result<std::string> Conclude(const std::string& name, bool promote,
                               const std::string& variant = "");
  Status Flush();

  // Live counters for /metrics: experiment -> variant -> {requests, errors}.
  std::map<std::string, std::map<std::string, std::pair<int64_t, int64_t>>> Counters() const;

  struct Impl;

 private:
  explicit Experiments(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ronghe::serve
