// The over-the-air agent of an edge node: follows one model channel of a hub and keeps the node
// on the best version it has verified, without ever running one that is forged, damaged or worse.
//
//   update:   HubClient::Update (TUF: signatures, thresholds, expiry, rollback and freeze
//             checks) -> the newest version of the channel -> its file, checked against the
//             signed length and sha256, into state/versions/ -> parsed (the artifact's own
//             digest) -> shadowed -> switched, or refused and remembered as refused.
//   shadow:   the candidate and the running model forecast the node's recent windows whose next
//             value is known (at most shadow_windows). The candidate must give finite outputs,
//             a p99 under max_p99_us, and (with at least min_shadow windows) a MAPE not above
//             the running model's by more than `margin`. With fewer windows only the first two
//             apply, and the watch decides.
//   switch:   the new file and then state.json are written atomically before the node swaps
//             models; the previous version stays on disk and in memory.
//   watch:    for the next `watch` observations both the new and the previous model forecast
//             every step; a non-finite forecast rolls back at once, and at the end a MAPE above
//             the previous one's by more than `margin` rolls back. A rolled-back version is
//             refused from then on.
//   restart:  state.json names the running version and the previous one; a running file that no
//             longer loads falls back to the previous one.
// Every decision is an event (bounded buffer, oldest dropped and counted) for the cloud.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ronghe/base/mutex.h"
#include "ronghe/base/status.h"
#include "ronghe/edge/runtime.h"
#include "ronghe/edge/server.h"

namespace ronghe::hub {
class HubClient;
}

namespace ronghe::edge {

struct AgentOptions {
  std::string hub;              // a hub directory or URL (required)
  std::string ca_file;          // Default: "" = the system's CAs (https hubs)
  std::string trusted_root;     // Default: "" = trust the hub's first root on first use
  std::string model;            // the channel: a hub model name (required)
  std::string node;             // this node's id, in every event (required)
  std::string state_dir;        // versions/, state.json, trust/ (required; created 0700)
  int64_t history = 720;        // Default: 720 observations kept (30 days of hours).
  int64_t shadow_windows = 48;  // Default: 48 recent windows judged before a switch.
  int64_t min_shadow = 12;      // Default: 12; fewer known windows skip the error check.
  double margin = 0.10;         // Default: 0.10 = MAPE may be 10% (relative) above the old.
  double max_p99_us = 1000;     // Default: 1 ms per forecast.
  int64_t watch = 24;           // Default: 24 observations watched after a switch.
  int64_t max_events = 1000;    // Default: 1000 buffered events; older ones are dropped.
};

class Agent {
 public:
  // Restores the state (or starts empty) and puts the running model on `node`.
  static Result<std::unique_ptr<Agent>> Open(const AgentOptions& options, Node* node);
  ~Agent();

  // One hub check: nothing new, a switch, or a refusal (returned as OK with an event; the
  // Status is an error only when the hub could not be read: the node keeps serving).
  Status CheckForUpdate();
  // A new observation (raw values, one step: features() of them): scores the forecasts made
  // for this step, and makes the next ones.
  Status Observe(const std::vector<float>& row);
  // The running model's forecast of the next step from the node's history.
  Result<std::vector<float>> Forecast() const;

  nlohmann::json Describe() const;  // version, previous, refused, phase, recent MAPE, ...
  // Takes the buffered events (each: node, time, kind, version, detail); `dropped` counts the
  // ones the bound discarded since the last call.
  std::vector<nlohmann::json> TakeEvents(int64_t* dropped);
  // Puts events back at the front (the cloud was unreachable): the bound still holds.
  void ReturnEvents(std::vector<nlohmann::json> events);

 private:
  struct Loaded {
    std::shared_ptr<const Model> model;
    std::string version, file;
  };
  Agent() = default;
  ronghe::Status SaveState() const REQUIRES(mu_);
  void Event(const std::string& kind, const std::string& version, const std::string& detail)
      REQUIRES(mu_);
  // MAPE of `m` over the last `windows` windows of the history whose next value is known, and its
  // latency p99 (us); false when an output is not finite.
  bool Backtest(const Model& m, int64_t windows, double* mape, double* p99_us,
                int64_t* counted) const REQUIRES(mu_);
  void Switch(Loaded next) REQUIRES(mu_);
  void RollBack(const std::string& why) REQUIRES(mu_);

  AgentOptions o_;
  Node* node_ = nullptr;
  std::unique_ptr<hub::HubClient> client_;
  mutable Mutex mu_;
  Loaded current_ GUARDED_BY(mu_), previous_ GUARDED_BY(mu_);
  std::vector<std::string> refused_ GUARDED_BY(mu_);
  std::deque<std::vector<float>> history_ GUARDED_BY(mu_);
  // The forecasts made for the next step (running; previous during a watch).
  std::vector<float> pending_ GUARDED_BY(mu_), pending_prev_ GUARDED_BY(mu_);
  int64_t watch_left_ GUARDED_BY(mu_) = 0;
  double watch_err_ GUARDED_BY(mu_) = 0, watch_err_prev_ GUARDED_BY(mu_) = 0;
  int64_t watch_n_ GUARDED_BY(mu_) = 0;
  std::deque<double> recent_ape_ GUARDED_BY(mu_);  // the running model's last 168 errors (%)
  std::deque<nlohmann::json> events_ GUARDED_BY(mu_);
  int64_t dropped_ GUARDED_BY(mu_) = 0;
};

}  // namespace ronghe::edge
