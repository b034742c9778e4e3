#include "ronghe/crypto/mask.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <stdexcept>
#include <unordered_set>

#include "ronghe/base/hash.h"
#include "ronghe/base/mutex.h"

namespace ronghe::crypto {

namespace {

// Largest log q for 128-bit security (HomomorphicEncryption.org standard, classical, ternary
// secrets; the Gaussian column allows 2 bits more): N = 1024: 27, 2048: 54, 4096: 109.
int MaxLogQ(int n) { return n == 1024 ? 27 : n == 2048 ? 54 : n == 4096 ? 109 : 0; }

void RandomBytes(uint8_t* out, size_t n) {
  // The OS CSPRNG or nothing: a predictable mask would reveal the update.
  if (RAND_bytes(out, static_cast<int>(n)) != 1)
    throw std::runtime_error("OS random number generator unavailable (RAND_bytes failed)");
}

// Centred binomial: popcount of eta random bits minus popcount of eta more; |v| <= eta <= 64.
void SampleCbd(int eta, int64_t* out, int n, std::vector<uint64_t>& buf) {
  buf.resize(2 * static_cast<size_t>(n));
  RandomBytes(reinterpret_cast<uint8_t*>(buf.data()), buf.size() * 8);
  const uint64_t keep = eta == 64 ? ~0ull : (1ull << eta) - 1;
  for (int i = 0; i < n; ++i) {
    out[i] = __builtin_popcountll(buf[2 * i] & keep) - __builtin_popcountll(buf[2 * i + 1] & keep);
  }
  std::fill(buf.begin(), buf.end(), 0);
}

// The fingerprints of the last secrets this process drew. A mask key used twice with different
// contributor sets lets the coordinator subtract one round's key sum from another's and unmask
// single updates; with a working CSPRNG a repeat never happens (2^-100 and far less), so one is
// proof of a broken or forced generator and the seal is refused instead of sent.
class SecretHistory {
 public:
  static constexpr size_t kKeep = 4096;
  // False when `s` was drawn before.
  bool Remember(const std::vector<int64_t>& s) EXCLUDES(mu_) {
    std::string fp =
        Sha256(std::string_view(reinterpret_cast<const char*>(s.data()), s.size() * 8));
    MutexLock lock(&mu_);
    if (!seen_.insert(fp).second) return false;
    order_.push_back(std::move(fp));
    if (order_.size() > kKeep) {
      seen_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }

 private:
  Mutex mu_;
  std::unordered_set<std::string> seen_ GUARDED_BY(mu_);
  std::deque<std::string> order_ GUARDED_BY(mu_);
};

SecretHistory& History() {
  static auto* h = new SecretHistory();
  return *h;
}

}  // namespace

Result<Masker> Masker::Create(const MaskOptions& o) {
  const int max_log_q = MaxLogQ(o.n);
  if (max_log_q == 0)
    return InvalidArgument(
        "mask: ring dimension N must be 1024, 2048 or 4096 (128-bit security), "
        "not " +
        std::to_string(o.n));
  if (o.log_q < 8 || o.log_q > std::min(max_log_q, 63)) {
    return InvalidArgument("mask: log q = " + std::to_string(o.log_q) +
                           " with N = " + std::to_string(o.n) + " is outside 8.." +
                           std::to_string(std::min(max_log_q, 63)) +
                           " (HomomorphicEncryption.org standard, 128-bit security)");
  }
  if (o.value_bits < 2 || o.value_bits > 32)
    return InvalidArgument("mask: value bits must be 2..32");
  if (o.max_summands < 1 || o.max_summands > 65536)
    return InvalidArgument("mask: max summands must be 1..65536");
  if (o.eta < 1 || o.eta > 64) return InvalidArgument("mask: eta must be 1..64");
  int headroom = 0;
  while ((1 << headroom) < o.max_summands) ++headroom;
  // t = 2^(value_bits + headroom) holds the sum of max_summands values in (-t/2, t/2).
  const int log_t = o.value_bits + headroom;
  const int log_delta = o.log_q - log_t;
  const int64_t max_error = static_cast<int64_t>(o.max_summands) * o.eta;
  if (log_delta < 1 || (int64_t{1} << (log_delta - 1)) <= max_error) {
    return InvalidArgument(
        "mask: cannot decode exactly: " + std::to_string(o.max_summands) + " parties of " +
        std::to_string(o.value_bits) + "-bit values need " + std::to_string(log_t) +
        " bits of message, leaving Delta = 2^" + std::to_string(log_delta) + " in q = 2^" +
        std::to_string(o.log_q) + ", and the summed errors reach " + std::to_string(max_error) +
        " (they must stay below Delta / 2); raise log q or lower the parties or bits");
  }
  Masker m;
  m.o_ = o;
  m.log_delta_ = log_delta;
  ASSIGN_OR_RETURN(m.ring_, NegacyclicRing::Create(o.n, o.log_q, max_error));
  return m;
}

void Masker::ExpandPublic(const MaskSeed& seed, int64_t block, uint64_t* out) const {
  // AES-128-CTR, key = seed[0..16), IV = seed[16..24) || block (big-endian): one stream per block.
  uint8_t iv[16];
  std::copy(seed.begin() + 16, seed.begin() + 24, iv);
  for (int i = 0; i < 8; ++i)
    iv[8 + i] = static_cast<uint8_t>(static_cast<uint64_t>(block) >> (56 - 8 * i));
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  std::fill(out, out + o_.n, 0);
  auto* bytes = reinterpret_cast<uint8_t*>(out);
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_ctr(), nullptr, seed.data(), iv) != 1 ||
      EVP_EncryptUpdate(ctx.get(), bytes, &len, bytes, o_.n * 8) != 1) {
    throw std::runtime_error("AES-128-CTR unavailable");
  }
  const uint64_t mask = ring_.mask();
  for (int i = 0; i < o_.n; ++i) out[i] &= mask;  // q is a power of two: uniform mod q
}

Result<Masker::Sealed> Masker::Seal(const int32_t* x, int64_t length, const MaskSeed& seed) const {
  const int n = o_.n;
  const int64_t blocks = Blocks(length);
  Sealed out;
  out.s.resize(n);
  std::vector<uint64_t> rnd;
  SampleCbd(o_.eta, out.s.data(), n, rnd);
  if (!History().Remember(out.s)) {
    std::fill(out.s.begin(), out.s.end(), 0);
    return Internal(
        "mask: the random number generator returned a mask key this process drew before; "
        "refusing to seal (a reused key would let the coordinator unmask single updates). "
        "Check the OS random source (getrandom) and OpenSSL's RAND configuration");
  }
  out.y.resize(static_cast<size_t>(blocks) * n);
  const NegacyclicRing::Secret secret = ring_.TransformSecret(out.s);
  std::vector<uint64_t> a(n), as(n), scratch(n);
  std::vector<int64_t> e(n);
  const uint64_t mask = ring_.mask();
  for (int64_t j = 0; j < blocks; ++j) {
    ExpandPublic(seed, j, a.data());
    ring_.MultiplyBySecret(a.data(), secret, as.data(), scratch.data());
    SampleCbd(o_.eta, e.data(), n, rnd);
    uint64_t* y = out.y.data() + j * n;
    for (int i = 0; i < n; ++i) {
      const int64_t idx = j * n + i;
      const int64_t v = idx < length ? x[idx] : 0;
      y[i] =
          ((static_cast<uint64_t>(v) << log_delta_) + as[i] + static_cast<uint64_t>(e[i])) & mask;
    }
  }
  std::fill(e.begin(), e.end(), 0);
  return out;
}

Result<std::vector<int64_t>> Masker::Unmask(const std::vector<uint64_t>& sum_y,
                                            const std::vector<int64_t>& sum_s, int64_t length,
                                            int summands, const MaskSeed& seed,
                                            int64_t max_abs) const {
  const int n = o_.n;
  const int64_t blocks = Blocks(length);
  if (summands < 1 || summands > o_.max_summands) {
    return InvalidArgument("mask: " + std::to_string(summands) +
                           " summands, the parameters allow " + std::to_string(o_.max_summands));
  }
  if (static_cast<int64_t>(sum_y.size()) != blocks * n || static_cast<int>(sum_s.size()) != n) {
    return InvalidArgument("mask: " + std::to_string(sum_y.size()) + " coefficients and " +
                           std::to_string(sum_s.size()) + " secret coefficients for " +
                           std::to_string(length) + " values");
  }
  const int64_t max_error = static_cast<int64_t>(summands) * o_.eta;
  for (int i = 0; i < n; ++i) {
    if (sum_s[i] < -max_error || sum_s[i] > max_error) {
      return DataLoss("mask: the secrets' sum has coefficient " + std::to_string(i) + " = " +
                      std::to_string(sum_s[i]) + ", beyond " + std::to_string(summands) +
                      " secrets' range (a wrong decryption or a secret that is not small)");
    }
  }
  if (max_abs < 0) max_abs = static_cast<int64_t>(summands) * qmax();
  const NegacyclicRing::Secret secret = ring_.TransformSecret(sum_s);
  const uint64_t mask = ring_.mask();
  const int64_t q_half = int64_t{1} << (o_.log_q - 1);
  std::vector<uint64_t> a(n), as(n), scratch(n);
  std::vector<int64_t> out(length);
  for (int64_t j = 0; j < blocks; ++j) {
    ExpandPublic(seed, j, a.data());
    ring_.MultiplyBySecret(a.data(), secret, as.data(), scratch.data());
    for (int i = 0; i < n; ++i) {
      const int64_t idx = j * n + i;
      const uint64_t zu = (sum_y[idx] - as[i]) & mask;
      const int64_t z =
          static_cast<int64_t>(zu) - (static_cast<int64_t>(zu) >= q_half ? 2 * q_half : 0);
      // Nearest multiple of Delta (arithmetic shift floors, also for negative z).
      const int64_t v = (z + (int64_t{1} << (log_delta_ - 1))) >> log_delta_;
      const int64_t residual = z - v * (int64_t{1} << log_delta_);
      const bool padding = idx >= length;
      if (residual < -max_error || residual > max_error || v < -max_abs || v > max_abs ||
          (padding && v != 0)) {
        return DataLoss("mask: the aggregate is not a sum of " + std::to_string(summands) +
                        " sealed updates: " + (padding ? "padding " : "") + "value " +
                        std::to_string(idx) + " decodes to " + std::to_string(v) + " with error " +
                        std::to_string(residual) + " (allowed +-" + std::to_string(max_abs) +
                        ", error +-" + std::to_string(max_error) + ")");
      }
      if (!padding) out[idx] = v;
    }
  }
  return out;
}

}  // namespace ronghe::crypto
