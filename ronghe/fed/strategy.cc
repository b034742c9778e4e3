#include "ronghe/fed/strategy.h"

#include <openssl/rand.h>

#include <cmath>
#include <cstdlib>
#include <limits>

namespace ronghe::fed {

Result<ServerOptimizer> ServerOptimizer::Create(const ServerOptimizerOptions& o, int64_t size) {
  if (o.name != "fedavg" && o.name != "fedadam" && o.name != "fedyogi") {
    return InvalidArgument("federation.strategy: unknown '" + o.name +
                           "' (fedavg, fedprox, fedadam, fedyogi)");
  }
  if (!(o.lr > 0)) return InvalidArgument("federation.server_lr: must be > 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) {
    return InvalidArgument("federation.beta1/beta2: must be in [0, 1)");
  }
  if (!(o.tau > 0)) return InvalidArgument("federation.tau: must be > 0");
  ServerOptimizer s;
  s.o_ = o;
  if (o.name != "fedavg") {
    s.m_.assign(size, 0.0f);
    s.v_.assign(size, static_cast<float>(o.tau * o.tau));
  }
  return s;
}

Status ServerOptimizer::Apply(const std::vector<float>& d, std::vector<float>* w) {
  if (d.size() != w->size())
    return InvalidArgument("server optimizer: update and model sizes differ");
  const float lr = static_cast<float>(o_.lr);
  if (o_.name == "fedavg") {
    for (size_t i = 0; i < d.size(); ++i) (*w)[i] += lr * d[i];
    return Status::OK();
  }
  if (m_.size() != d.size()) return Internal("server optimizer: state has the wrong size");
  const float b1 = static_cast<float>(o_.beta1), b2 = static_cast<float>(o_.beta2),
              tau = static_cast<float>(o_.tau);
  const bool yogi = o_.name == "fedyogi";
  for (size_t i = 0; i < d.size(); ++i) {
    m_[i] = b1 * m_[i] + (1 - b1) * d[i];
    float d2 = d[i] * d[i];
    if (yogi) {
      float diff = v_[i] - d2;
      v_[i] -= (1 - b2) * d2 * static_cast<float>((diff > 0) - (diff < 0));
    } else {
      v_[i] = b2 * v_[i] + (1 - b2) * d2;
    }
    (*w)[i] += lr * m_[i] / (std::sqrt(v_[i]) + tau);
  }
  return Status::OK();
}

double ClipL2(std::vector<float>* v, double max_norm) {
  double s = 0;
  for (float x : *v) s += static_cast<double>(x) * x;
  double norm = std::sqrt(s);
  if (norm > max_norm && norm > 0) {
    float f = static_cast<float>(max_norm / norm);
    for (float& x : *v) x *= f;
  }
  return norm;
}

void AddGaussianNoise(std::vector<float>* v, double sigma) {
  if (sigma <= 0) return;
  constexpr size_t kBatch = 4096;
  uint64_t buf[kBatch];
  size_t used = kBatch;
  auto uniform = [&]() {  // (0, 1], 53 random bits
    if (used == kBatch) {
      if (RAND_bytes(reinterpret_cast<unsigned char*>(buf), sizeof buf) != 1) std::abort();
      used = 0;
    }
    return (static_cast<double>(buf[used++] >> 11) + 1.0) * 0x1.0p-53;
  };
  for (size_t i = 0; i < v->size(); i += 2) {
    // Box-Muller: two independent normals per pair of uniforms.
    double r = std::sqrt(-2.0 * std::log(uniform())), t = 2 * M_PI * uniform();
    (*v)[i] += static_cast<float>(sigma * r * std::cos(t));
    if (i + 1 < v->size()) (*v)[i + 1] += static_cast<float>(sigma * r * std::sin(t));
  }
}

double GaussianEpsilon(double z, int64_t rounds, double delta) {
  if (z <= 0 || rounds <= 0) return rounds <= 0 ? 0 : std::numeric_limits<double>::infinity();
  double best = std::numeric_limits<double>::infinity();
  for (double a = 1.01; a < 10000; a *= 1.01) {
    double eps = rounds * a / (2 * z * z) + std::log(1 / delta) / (a - 1);
    best = std::min(best, eps);
  }
  return best;
}

}  // namespace ronghe::fed
