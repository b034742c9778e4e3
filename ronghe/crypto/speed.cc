#include "ronghe/crypto/speed.h"

#include <algorithm>
#include <chrono>

#include "ronghe/base/thread_pool.h"
#include "ronghe/crypto/bigint.h"
#include "ronghe/crypto/paillier.h"
#include "ronghe/crypto/threshold.h"

namespace ronghe::crypto {

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs fn(i) for growing counts of i spread over `threads` until `seconds` have passed.
double OpsPerSecond(const std::function<void(int64_t)>& fn, int threads, double seconds,
                    int64_t per_call = 1) {
  int64_t count = threads;
  while (true) {
    double t0 = Now();
    ParallelFor(
        count,
        [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) fn(i);
        },
        threads);
    double dt = Now() - t0;
    if (dt >= seconds || count > (int64_t(1) << 30)) return count * per_call / dt;
    count = std::max(count * 2, static_cast<int64_t>(count * seconds / std::max(dt, 1e-6) * 1.1));
  }
}

}  // namespace

Result<std::vector<SpeedResult>> RunSpeed(const SpeedOptions& o) {
  std::vector<int> threads = o.threads;
  if (threads.empty()) {
    threads = {1};
    if (DefaultThreads() > 1) threads.push_back(DefaultThreads());
  }
  std::vector<SpeedResult> out;
  auto emit = [&](const std::string& op, int bits, int t, double v) {
    out.push_back({op, bits, t, v});
    if (o.on_result) o.on_result(out.back());
  };
  for (int bits : o.bits) {
    if (bits != 2048 && bits != 3072) return InvalidArgument("--bits must be 2048 or 3072");
    DealerOptions d;
    d.bits = bits;
    d.parties = 5;
    d.threshold = 3;
    double t0 = Now();
    ASSIGN_OR_RETURN(ThresholdKeys keys, DealThresholdKeys(d));
    if (o.keygen) emit("keygen", bits, 1, 1.0 / (Now() - t0));
    ASSIGN_OR_RETURN(KeyPair plain, GenerateKeyPair(bits));
    const auto& pub = *keys.public_key;
    const auto& pk = pub.paillier();
    const int pool = 64;
    std::vector<mpz_class> m(pool), c(pool), pc(pool);
    for (int i = 0; i < pool; ++i) {
      m[i] = RandomBelow(pk.n());
      c[i] = pk.Encrypt(m[i]);
      pc[i] = plain.public_key->Encrypt(m[i]);
    }
    const mpz_class exp = 2 * pub.delta() * keys.shares[0].s;
    // A batch of valid shares made cheaply: c_j = v^k_j has share v_1^(2 k_j) for party 1.
    std::vector<mpz_class> bc(o.batch), bs(o.batch);
    for (int j = 0; j < o.batch; ++j) {
      mpz_class k = RandomBits(64);
      bc[j] = Pow(pub.v(), k, pk.n2());
      bs[j] = Pow(pub.verification_key(1), 2 * k, pk.n2());
    }
    PartialDecryption batch;
    batch.index = 1;
    batch.shares = bs;
    batch.proof = ProveBatch(pub, keys.shares[0], bc, bs);
    RETURN_IF_ERROR(VerifyPartial(pub, bc, batch).WithContext("speed self-check"));
    mpz_class u = c[0] * c[0] % pk.n2();
    u = u * u % pk.n2();
    mpz_class ci = PowSecret(c[0], exp, pk.n2());
    mpz_class ui = ci * ci % pk.n2();
    EqualityProof proof = ProveEquality(pub, keys.shares[0], u, ui);
    if (!VerifyEquality(pub, 1, u, ui, proof))
      return Internal("speed self-check: proof does not verify");
    std::vector<mpz_class> shares3;
    for (int i = 0; i < 3; ++i)
      shares3.push_back(PowSecret(c[0], 2 * pub.delta() * keys.shares[i].s, pk.n2()));

    for (int t : threads) {
      auto run = [&](const char* op, const std::function<void(int64_t)>& fn, int64_t per_call = 1) {
        emit(op, bits, t, OpsPerSecond(fn, t, o.seconds, per_call));
      };
      run("encrypt", [&](int64_t i) { (void)pk.Encrypt(m[i % pool]); });
      run("decrypt", [&](int64_t i) { (void)plain.private_key->Decrypt(pc[i % pool]); });
      run("add", [&](int64_t i) { (void)pk.Add(c[i % pool], c[(i + 1) % pool]); });
      run("partial_decrypt", [&](int64_t i) { (void)PowSecret(c[i % pool], exp, pk.n2()); });
      run("prove", [&](int64_t) { (void)ProveEquality(pub, keys.shares[0], u, ui); });
      run("verify", [&](int64_t) { (void)VerifyEquality(pub, 1, u, ui, proof); });
      // One batch at a time, using all `t` threads inside it; ops = shares verified.
      {
        double t1 = Now();
        int64_t calls = 0;
        do {
          (void)VerifyPartial(pub, bc, batch, t);
          ++calls;
        } while (Now() - t1 < o.seconds);
        emit("verify_batch", bits, t, calls * o.batch / (Now() - t1));
      }
      run("combine", [&](int64_t) { (void)Combine(pub, {1, 2, 3}, shares3); });
    }
  }
  return out;
}

}  // namespace ronghe::crypto
