#include "ronghe/crypto/packing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {

Result<Packer> Packer::Create(const PackingOptions& o, int plaintext_bits) {
  if (o.bits < 2 || o.bits > 32) return InvalidArgument("packing: bits must be 2..32");
  if (!(o.clip > 0) || !std::isfinite(o.clip))
    return InvalidArgument("packing: clip must be a positive number");
  if (o.max_summands < 1 || o.max_summands > 65536)
    return InvalidArgument("packing: max_summands must be 1..65536");
  Packer p;
  p.o_ = o;
  int headroom = 0;
  while ((1 << headroom) < o.max_summands) ++headroom;
  p.slot_bits_ = o.bits + headroom;
  p.slots_ = (plaintext_bits - 1) / p.slot_bits_;
  if (p.slots_ < 1) return InvalidArgument("packing: plaintext too small for one slot");
  p.qmax_ = (int64_t(1) << (o.bits - 1)) - 1;
  p.offset_ = p.qmax_;
  p.step_ = o.clip / static_cast<double>(p.qmax_);
  return p;
}

double Packer::MaxAbsErrorOfSum(int summands) const {
  return summands * step_ * (o_.stochastic_rounding ? 1.0 : 0.5);
}

std::vector<int32_t> Packer::Quantize(const float* x, int64_t length, double scale) const {
  std::vector<int32_t> q(length);
  // Stochastic rounding needs unbiased, not secret, randomness: a fast generator seeded once
  // from the OS CSPRNG.
  std::mt19937_64 rng(o_.stochastic_rounding ? RandomBits(64).get_ui() : 0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t i = 0; i < length; ++i) {
    double v = static_cast<double>(x[i]) * scale;
    if (!std::isfinite(v)) v = 0;
    v = std::clamp(v, -o_.clip, o_.clip) / step_;
    double r = o_.stochastic_rounding ? std::floor(v + unit(rng)) : std::nearbyint(v);
    q[i] = static_cast<int32_t>(std::clamp(static_cast<int64_t>(r), -qmax_, qmax_));
  }
  return q;
}

std::vector<mpz_class> Packer::EncodeQuantized(const int32_t* q, int64_t length) const {
  const int64_t count = PlaintextCount(length);
  std::vector<mpz_class> out(count);
  const size_t words = (static_cast<size_t>(slots_) * slot_bits_ + 63) / 64;
  std::vector<uint64_t> buf(words);
  for (int64_t p = 0; p < count; ++p) {
    std::fill(buf.begin(), buf.end(), 0);
    for (int s = 0; s < slots_; ++s) {
      int64_t i = p * slots_ + s;
      if (i >= length) break;
      uint64_t u = static_cast<uint64_t>(int64_t{q[i]} + offset_);
      size_t bit = static_cast<size_t>(s) * slot_bits_;
      buf[bit / 64] |= u << (bit % 64);
      if (bit % 64 + slot_bits_ > 64) buf[bit / 64 + 1] |= u >> (64 - bit % 64);
    }
    mpz_import(out[p].get_mpz_t(), words, -1, sizeof(uint64_t), 0, 0, buf.data());
  }
  std::fill(buf.begin(), buf.end(), 0);
  return out;
}

std::vector<mpz_class> Packer::Encode(const float* x, int64_t length, double scale) const {
  std::vector<int32_t> q = Quantize(x, length, scale);
  std::vector<mpz_class> out = EncodeQuantized(q.data(), length);
  std::fill(q.begin(), q.end(), 0);
  return out;
}

int64_t Packer::MaxAbsQuantized(double max_abs_sum, int summands) const {
  // Each summand's slot is q + offset with |q| <= qmax; scaled by s_i it is at most
  // round(s_i * qmax) (one more at most with stochastic rounding), so the sum is within
  // max_abs_sum / step + summands of the offsets.
  return static_cast<int64_t>(std::floor(max_abs_sum / step_ + summands + 1));
}

Result<std::vector<float>> Packer::DecodeSum(const std::vector<mpz_class>& sums, int64_t length,
                                             int summands, double max_abs_sum) const {
  ASSIGN_OR_RETURN(
      std::vector<int64_t> q,
      DecodeSumQuantized(sums, length, summands,
                         max_abs_sum >= 0 ? MaxAbsQuantized(max_abs_sum, summands) : -1));
  std::vector<float> out(length);
  for (int64_t i = 0; i < length; ++i)
    out[i] = static_cast<float>(static_cast<double>(q[i]) * step_);
  return out;
}

Result<std::vector<int64_t>> Packer::DecodeSumQuantized(const std::vector<mpz_class>& sums,
                                                        int64_t length, int summands,
                                                        int64_t max_abs_q) const {
  if (summands < 1 || summands > o_.max_summands) {
    return InvalidArgument("packing: " + std::to_string(summands) +
                           " summands exceed the headroom for " + std::to_string(o_.max_summands));
  }
  if (static_cast<int64_t>(sums.size()) != PlaintextCount(length)) {
    return InvalidArgument("packing: " + std::to_string(sums.size()) + " plaintexts cannot hold " +
                           std::to_string(length) + " values");
  }
  const size_t used_bits = static_cast<size_t>(slots_) * slot_bits_;
  const size_t words = (used_bits + 63) / 64;
  std::vector<uint64_t> buf(words + 1);
  std::vector<int64_t> out(length);
  const uint64_t mask = slot_bits_ == 64 ? ~uint64_t(0) : (uint64_t(1) << slot_bits_) - 1;
  const int64_t total_offset = offset_ * summands;
  // Without a tighter bound, a slot holds [0, 2 * offset * summands].
  const int64_t max_dev = max_abs_q >= 0 ? std::min(total_offset, max_abs_q) : total_offset;
  auto out_of_range = [&](size_t p, const std::string& why) {
    return DataLoss("packing: the aggregate is not a sum of " + std::to_string(summands) +
                    " encodings: plaintext " + std::to_string(p) + " " + why);
  };
  for (size_t p = 0; p < sums.size(); ++p) {
    if (sums[p] < 0 || mpz_sizeinbase(sums[p].get_mpz_t(), 2) > used_bits) {
      return out_of_range(p,
                          "has bits above its last slot (wrong key, or a contribution that is "
                          "not an encoding)");
    }
    std::fill(buf.begin(), buf.end(), 0);
    size_t n = 0;
    mpz_export(buf.data(), &n, -1, sizeof(uint64_t), 0, 0, sums[p].get_mpz_t());
    for (int s = 0; s < slots_; ++s) {
      int64_t i = static_cast<int64_t>(p) * slots_ + s;
      size_t bit = static_cast<size_t>(s) * slot_bits_;
      uint64_t u = buf[bit / 64] >> (bit % 64);
      if (bit % 64 + slot_bits_ > 64) u |= buf[bit / 64 + 1] << (64 - bit % 64);
      u &= mask;
      if (i >= length) {  // padding: every honest encoding leaves it zero
        if (u != 0) return out_of_range(p, "has a non-zero padding slot " + std::to_string(s));
        continue;
      }
      const int64_t q = static_cast<int64_t>(u) - total_offset;
      if (q < -max_dev || q > max_dev) {
        char value[64];
        std::snprintf(value, sizeof value, "%.6g", static_cast<double>(q) * step_);
        return out_of_range(p, "holds value " + std::to_string(i) + " = " + value +
                                   ", outside the contributors' range of +-" +
                                   std::to_string(static_cast<double>(max_dev) * step_));
      }
      out[i] = q;
    }
  }
  return out;
}

}  // namespace ronghe::crypto
