// What the coordinator does with the decrypted mean update: server optimizers (FedAvg, FedAdam,
// FedYogi; Reddi et al., "Adaptive Federated Optimization", ICLR 2021) and central differential
// privacy (DP-FedAvg, McMahan et al. 2018: each participant clips its update's L2 norm, the
// coordinator adds Gaussian noise to the sum, and a Renyi-DP accountant reports epsilon).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::fed {

struct ServerOptimizerOptions {
  std::string name = "fedavg";  // Default: "fedavg". Or "fedadam", "fedyogi". (FedProx is
                                // FedAvg plus the participants' proximal term, prox_mu.)
  double lr = 1.0;              // Default: 1.0 (FedAvg: w += lr * mean update).
  double beta1 = 0.9;           // Default: 0.9.
  double beta2 = 0.99;          // Default: 0.99.
  double tau = 1e-3;            // Default: 1e-3. Adaptivity; v starts at tau^2.
};

class ServerOptimizer {
 public:
  static Result<ServerOptimizer> Create(const ServerOptimizerOptions& options, int64_t size);
  // weights += step computed from the mean update (the pseudo-gradient's negative).
  Status Apply(const std::vector<float>& mean_update, std::vector<float>* weights);

  // Moments, for checkpoints (empty for FedAvg).
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  const ServerOptimizerOptions& options() const { return o_; }

 private:
  ServerOptimizerOptions o_;
  std::vector<float> m_, v_;
};

struct DpOptions {
  double noise_multiplier = 0;  // Default: 0 = off. Noise std = noise_multiplier * clip_norm.
  double clip_norm = 1.0;       // Default: 1.0. Each participant's update L2 norm bound.
  double delta = 1e-5;          // Default: 1e-5. Target delta for the reported epsilon.
};

// Scales `v` down so its L2 norm is at most `max_norm`; returns the norm before clipping.
double ClipL2(std::vector<float>* v, double max_norm);

// Adds N(0, sigma^2) to each element, with randomness from the OS CSPRNG (the noise protects
// the participants, so it must not be predictable like a seeded PRNG's).
void AddGaussianNoise(std::vector<float>* v, double sigma);

// Epsilon after `rounds` full-participation Gaussian mechanisms with the given noise multiplier
// (sensitivity = clip norm; add/remove one participant), at `delta`, via Renyi DP (Mironov 2017):
// eps = min over alpha of rounds * alpha / (2 z^2) + log(1/delta) / (alpha - 1).
double GaussianEpsilon(double noise_multiplier, int64_t rounds, double delta);

}  // namespace ronghe::fed
