// Paillier / threshold Paillier operations and the end-to-end secure aggregation of 5 updates of
// 1,000,000 float32 values with 3-of-5 decryption. Run through bench/run.sh (docs/benchmarks.md).
#include <benchmark/benchmark.h>

#include <random>

#include "ronghe/crypto/aggregator.h"
#include "ronghe/crypto/bigint.h"
#include "ronghe/crypto/paillier.h"
#include "ronghe/crypto/threshold.h"

namespace {

using namespace ronghe::crypto;

struct Fixture {
  ThresholdKeys keys;
  KeyPair plain;
  std::vector<mpz_class> m, c, pc;
  explicit Fixture(int bits) {
    DealerOptions d;
    d.bits = bits;
    keys = std::move(DealThresholdKeys(d)).value();
    plain = std::move(GenerateKeyPair(bits)).value();
    for (int i = 0; i < 16; ++i) {
      m.push_back(RandomBelow(keys.public_key->paillier().n()));
      c.push_back(keys.public_key->paillier().Encrypt(m.back()));
      pc.push_back(plain.public_key->Encrypt(m.back()));
    }
  }
};

Fixture& Get(int bits) {
  static Fixture* f2048 = nullptr;
  static Fixture* f3072 = nullptr;
  Fixture*& f = bits == 2048 ? f2048 : f3072;
  if (!f) f = new Fixture(bits);
  return *f;
}

void BM_Encrypt(benchmark::State& s) {
  auto& f = Get(s.range(0));
  size_t i = 0;
  for (auto _ : s)
    benchmark::DoNotOptimize(f.keys.public_key->paillier().Encrypt(f.m[i++ % f.m.size()]));
}
void BM_TextbookEncrypt(benchmark::State& s) {  // (1 + m n) r^n mod n^2, for reference
  auto& f = Get(s.range(0));
  const auto& pk = f.keys.public_key->paillier();
  mpz_class r = RandomUnit(pk.n());
  for (auto _ : s)
    benchmark::DoNotOptimize(mpz_class((1 + f.m[0] * pk.n()) * Pow(r, pk.n(), pk.n2()) % pk.n2()));
}
void BM_Decrypt(benchmark::State& s) {
  auto& f = Get(s.range(0));
  size_t i = 0;
  for (auto _ : s) benchmark::DoNotOptimize(f.plain.private_key->Decrypt(f.pc[i++ % f.pc.size()]));
}
void BM_PartialDecrypt(benchmark::State& s) {
  auto& f = Get(s.range(0));
  const auto& pub = *f.keys.public_key;
  mpz_class e = 2 * pub.delta() * f.keys.shares[0].s;
  size_t i = 0;
  for (auto _ : s)
    benchmark::DoNotOptimize(PowSecret(f.c[i++ % f.c.size()], e, pub.paillier().n2()));
}
void BM_ProveVerify(benchmark::State& s, bool verify) {
  auto& f = Get(s.range(0));
  const auto& pub = *f.keys.public_key;
  const mpz_class& n2 = pub.paillier().n2();
  mpz_class ci = PowSecret(f.c[0], 2 * pub.delta() * f.keys.shares[0].s, n2);
  mpz_class u = f.c[0] * f.c[0] % n2;
  u = u * u % n2;
  mpz_class ui = ci * ci % n2;
  auto proof = ProveEquality(pub, f.keys.shares[0], u, ui);
  for (auto _ : s) {
    if (verify) {
      benchmark::DoNotOptimize(VerifyEquality(pub, 1, u, ui, proof));
    } else {
      benchmark::DoNotOptimize(ProveEquality(pub, f.keys.shares[0], u, ui));
    }
  }
}
void BM_Prove(benchmark::State& s) { BM_ProveVerify(s, false); }
void BM_Verify(benchmark::State& s) { BM_ProveVerify(s, true); }

// Batch verification of 10,000 shares of one party (single thread), valid shares made cheaply
// as c = v^k, share = v_1^(2k).
void BM_VerifyBatch10k(benchmark::State& s) {
  auto& f = Get(s.range(0));
  const auto& pub = *f.keys.public_key;
  const auto& n2 = pub.paillier().n2();
  const int kN = 10000;
  std::vector<mpz_class> cs(kN), shares(kN);
  for (int j = 0; j < kN; ++j) {
    mpz_class k = RandomBits(64);
    cs[j] = Pow(pub.v(), k, n2);
    shares[j] = Pow(pub.verification_key(1), 2 * k, n2);
  }
  PartialDecryption p;
  p.index = 1;
  p.shares = shares;
  p.proof = ProveBatch(pub, f.keys.shares[0], cs, shares);
  for (auto _ : s) {
    if (!VerifyPartial(pub, cs, p, 1).ok()) s.SkipWithError("batch did not verify");
  }
  s.counters["shares_per_s"] =
      benchmark::Counter(kN, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_Combine(benchmark::State& s) {
  auto& f = Get(s.range(0));
  const auto& pub = *f.keys.public_key;
  std::vector<mpz_class> sh;
  for (int i = 0; i < 3; ++i)
    sh.push_back(PowSecret(f.c[0], 2 * pub.delta() * f.keys.shares[i].s, pub.paillier().n2()));
  for (auto _ : s) benchmark::DoNotOptimize(Combine(pub, {1, 2, 3}, sh));
}

// End to end: 5 participants x N float32 values, 3-of-5 decryption with verified batch proofs,
// all cores, every value under Paillier (the paillier scheme; fed_bench compares the schemes).
// Counters are seconds per role and bytes per party.
void BM_SecureAggregation(benchmark::State& s) {
  const int64_t n = s.range(0);
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::vector<std::vector<float>> ups(5, std::vector<float>(n));
  for (auto& u : ups)
    for (auto& x : u) x = g(rng);
  SecureAggregatorOptions o;
  o.encryption = kPaillier;
  o.clip = 0.5;
  auto agg = SecureAggregator::Create(o);
  AggregateStats st;
  for (auto _ : s) {
    auto r = (*agg)->Aggregate(ups, {}, {}, &st);
    if (!r.ok()) s.SkipWithError(r.status().message().c_str());
  }
  s.counters["participant_encrypt_s"] = st.encrypt_seconds;
  s.counters["coordinator_add_s"] = st.add_seconds;
  s.counters["decrypting_party_s"] = st.partial_decrypt_seconds;
  s.counters["coordinator_verify_s"] = st.verify_seconds / 3;
  s.counters["combine_decode_s"] = st.combine_seconds;
  s.counters["ciphertexts"] = static_cast<double>(st.ciphertexts_per_party);
  s.counters["bytes_per_party"] = static_cast<double>(st.bytes_per_party);
}

BENCHMARK(BM_Encrypt)->Arg(2048)->Arg(3072)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TextbookEncrypt)->Arg(2048)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Decrypt)->Arg(2048)->Arg(3072)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PartialDecrypt)->Arg(2048)->Arg(3072)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Prove)->Arg(2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Verify)->Arg(2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_VerifyBatch10k)->Arg(2048)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_Combine)->Arg(2048)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SecureAggregation)
    ->Arg(1000000)
    ->Unit(benchmark::kSecond)
    ->Iterations(1)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
