#include "ronghe/crypto/threshold.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "ronghe/base/hash.h"
#include "ronghe/base/mutex.h"
#include "ronghe/base/thread_pool.h"
#include "ronghe/crypto/bigint.h"

namespace ronghe::crypto {

namespace {

mpz_class Factorial(int l) {
  mpz_class f;
  mpz_fac_ui(f.get_mpz_t(), static_cast<unsigned long>(l));
  return f;
}

void Wipe(mpz_class& x) { mpz_set_ui(x.get_mpz_t(), 0); }

void HashInt(Sha256Hasher& h, const mpz_class& x, size_t width) {
  std::string b = ToBytes(x, width);
  h.Update(b.data(), b.size());
}

// Bits of the prover's random exponent: |Delta * s_i| + |e| + 128 bits of statistical hiding.
int ProofRandomBits(const ThresholdPublicKey& pub) {
  return static_cast<int>(mpz_sizeinbase(pub.paillier().n2().get_mpz_t(), 2) +
                          mpz_sizeinbase(pub.delta().get_mpz_t(), 2)) +
         256 + 128;
}

mpz_class Challenge(const ThresholdPublicKey& pub, int index, const mpz_class& u,
                    const mpz_class& ui, const mpz_class& a, const mpz_class& b) {
  const size_t w = ByteLength(pub.paillier().n2());
  Sha256Hasher h;
  h.Update("ronghe.threshold.proof.v1", 25);
  HashInt(h, pub.paillier().n(), w);
  HashInt(h, pub.v(), w);
  HashInt(h, pub.verification_key(index), w);
  uint32_t idx = static_cast<uint32_t>(index);
  h.Update(&idx, sizeof idx);
  for (const mpz_class* x : {&u, &ui, &a, &b}) HashInt(h, *x, w);
  std::string d = h.FinalRaw();
  mpz_class e;
  mpz_import(e.get_mpz_t(), d.size(), 1, 1, 1, 0, d.data());
  return e;
}

}  // namespace

Result<std::shared_ptr<const ThresholdPublicKey>> ThresholdPublicKey::Create(
    std::shared_ptr<const PublicKey> paillier, int parties, int threshold, const mpz_class& v,
    std::vector<mpz_class> vk) {
  if (parties < 1 || parties > 64) return InvalidArgument("threshold key: parties must be 1..64");
  if (threshold < 1 || threshold > parties) {
    return InvalidArgument("threshold key: threshold must be 1.." + std::to_string(parties));
  }
  if (static_cast<int>(vk.size()) != parties) {
    return InvalidArgument("threshold key: expected " + std::to_string(parties) +
                           " verification keys, got " + std::to_string(vk.size()));
  }
  RETURN_IF_ERROR(paillier->Validate(v, "threshold key: v"));
  for (int i = 0; i < parties; ++i) {
    RETURN_IF_ERROR(
        paillier->Validate(vk[i], "threshold key: verification key " + std::to_string(i + 1)));
  }
  std::shared_ptr<ThresholdPublicKey> k(new ThresholdPublicKey());
  k->paillier_ = std::move(paillier);
  k->parties_ = parties;
  k->threshold_ = threshold;
  k->delta_ = Factorial(parties);
  k->v_ = v;
  k->vk_ = std::move(vk);
  mpz_class four_delta2 = 4 * k->delta_ * k->delta_;
  if (mpz_invert(k->combine_factor_.get_mpz_t(), four_delta2.get_mpz_t(),
                 k->paillier_->n().get_mpz_t()) == 0) {
    return InvalidArgument("threshold key: 4 * Delta^2 is not invertible mod n");
  }
  Sha256Hasher h;
  std::string head =
      k->paillier_->fingerprint() + "/" + std::to_string(parties) + "/" + std::to_string(threshold);
  h.Update(head.data(), head.size());
  const size_t w = ByteLength(k->paillier_->n2());
  HashInt(h, v, w);
  for (const auto& x : k->vk_) HashInt(h, x, w);
  k->fingerprint_ = h.FinalHex().substr(0, 32);
  return std::shared_ptr<const ThresholdPublicKey>(std::move(k));
}

Result<ThresholdKeys> DealThresholdKeys(const DealerOptions& o) {
  if (!o.insecure_for_testing && o.bits != 2048 && o.bits != 3072) {
    return InvalidArgument("key size must be 2048 or 3072 bits, not " + std::to_string(o.bits));
  }
  if (o.bits < 512 || o.bits % 2) return InvalidArgument("key size must be even and >= 512");
  if (o.parties < 1 || o.parties > 64) return InvalidArgument("parties must be 1..64");
  if (o.threshold < 1 || o.threshold > o.parties) {
    return InvalidArgument("threshold must be between 1 and the number of parties (" +
                           std::to_string(o.parties) + ")");
  }
  mpz_class p, q, n;
  while (true) {
    p = RandomPrime(o.bits / 2, true);
    q = RandomPrime(o.bits / 2, true);
    if (p == q) continue;
    n = p * q;
    // Both factors have their top bit set, but the product can still fall one bit short.
    if (static_cast<int>(mpz_sizeinbase(n.get_mpz_t(), 2)) == o.bits) break;
  }
  mpz_class pp = (p - 1) / 2, qq = (q - 1) / 2, m = pp * qq, nm = n * m;
  mpz_class m_inv;
  mpz_invert(m_inv.get_mpz_t(), m.get_mpz_t(), n.get_mpz_t());
  mpz_class d = m * m_inv;  // d = 0 (mod m), d = 1 (mod n)
  std::vector<mpz_class> coeff = {d};
  for (int k = 1; k < o.threshold; ++k) coeff.push_back(RandomBelow(nm));
  ThresholdKeys keys;
  for (int i = 1; i <= o.parties; ++i) {
    mpz_class s = 0;  // Horner over Z_{nm}
    for (int k = o.threshold - 1; k >= 0; --k) s = (s * i + coeff[k]) % nm;
    keys.shares.push_back({i, s});
  }
  ASSIGN_OR_RETURN(auto paillier, PublicKey::Create(n, MakeHs(n), 6, o.insecure_for_testing));
  mpz_class n2 = n * n;
  mpz_class r = RandomUnit(n2);
  mpz_class v = r * r % n2;
  mpz_class delta = Factorial(o.parties);
  std::vector<mpz_class> vk;
  for (const auto& s : keys.shares) vk.push_back(PowSecret(v, delta * s.s, n2));
  ASSIGN_OR_RETURN(keys.public_key,
                   ThresholdPublicKey::Create(paillier, o.parties, o.threshold, v, vk));
  for (mpz_class* x : {&p, &q, &pp, &qq, &m, &nm, &m_inv, &d, &r}) Wipe(*x);
  for (auto& c : coeff) Wipe(c);
  return keys;
}

Status CheckShare(const ThresholdPublicKey& pub, const KeyShare& share) {
  if (share.index < 1 || share.index > pub.parties()) {
    return InvalidArgument("share index " + std::to_string(share.index) +
                           " is not a party of this key (1.." + std::to_string(pub.parties()) +
                           ")");
  }
  if (share.s <= 0)
    return InvalidArgument("share " + std::to_string(share.index) + " is not positive");
  if (PowSecret(pub.v(), pub.delta() * share.s, pub.paillier().n2()) !=
      pub.verification_key(share.index)) {
    return InvalidArgument("share " + std::to_string(share.index) +
                           " does not match the verification key (a share of another key?)");
  }
  return Status::OK();
}

EqualityProof ProveEquality(const ThresholdPublicKey& pub, const KeyShare& share,
                            const mpz_class& u, const mpz_class& ui) {
  const mpz_class& n2 = pub.paillier().n2();
  mpz_class r = RandomBits(ProofRandomBits(pub));
  mpz_class a = PowSecret(u, r, n2), b = PowSecret(pub.v(), r, n2);
  EqualityProof p;
  p.e = Challenge(pub, share.index, u, ui, a, b);
  p.z = r + p.e * pub.delta() * share.s;
  Wipe(r);
  return p;
}

bool VerifyEquality(const ThresholdPublicKey& pub, int index, const mpz_class& u,
                    const mpz_class& ui, const EqualityProof& proof) {
  if (index < 1 || index > pub.parties()) return false;
  if (proof.e < 0 || mpz_sizeinbase(proof.e.get_mpz_t(), 2) > 256) return false;
  if (proof.z < 0 ||
      static_cast<int>(mpz_sizeinbase(proof.z.get_mpz_t(), 2)) > ProofRandomBits(pub) + 1)
    return false;
  const mpz_class& n2 = pub.paillier().n2();
  mpz_class g;
  mpz_gcd(g.get_mpz_t(), ui.get_mpz_t(), pub.paillier().n().get_mpz_t());
  if (g != 1) return false;
  // a = u^z * u_i^-e, b = v^z * v_i^-e; the proof holds when hashing them gives e back.
  mpz_class a = Pow(u, proof.z, n2) * Pow(ui, -proof.e, n2) % n2;
  mpz_class b = Pow(pub.v(), proof.z, n2) * Pow(pub.verification_key(index), -proof.e, n2) % n2;
  return Challenge(pub, index, u, ui, a, b) == proof.e;
}

mpz_class MultiExp(const std::vector<mpz_class>& bases, const std::vector<mpz_class>& exps,
                   const mpz_class& mod, int threads) {
  const int64_t n = static_cast<int64_t>(bases.size());
  if (n == 0) return 1;
  size_t max_bits = 1;
  for (const auto& e : exps) max_bits = std::max(max_bits, mpz_sizeinbase(e.get_mpz_t(), 2));
  int t = std::max(1, threads > 0 ? threads : 1);
  int64_t per = (n + t - 1) / t;
  // Window minimising (bits / c) * (N + 2^(c+1)).
  int c = 1;
  double best = 1e300;
  for (int cand = 1; cand <= 14; ++cand) {
    double cost = std::ceil(double(max_bits) / cand) * (double(per) + std::ldexp(2.0, cand));
    if (cost < best) {
      best = cost;
      c = cand;
    }
  }
  std::vector<mpz_class> partial(t, mpz_class(1));
  ParallelFor(
      t,
      [&](int64_t tb, int64_t te) {
        for (int64_t ti = tb; ti < te; ++ti) {
          int64_t lo = ti * per, hi = std::min(n, lo + per);
          mpz_class result = 1;
          int windows = static_cast<int>((max_bits + c - 1) / c);
          std::vector<mpz_class> bucket(size_t(1) << c);
          std::vector<char> used(size_t(1) << c);
          for (int w = windows - 1; w >= 0; --w) {
            for (int s = 0; s < c; ++s) result = result * result % mod;
            std::fill(used.begin(), used.end(), 0);
            for (int64_t j = lo; j < hi; ++j) {
              unsigned long d = 0;
              for (int b = 0; b < c; ++b)
                d |= static_cast<unsigned long>(mpz_tstbit(exps[j].get_mpz_t(), w * c + b)) << b;
              if (!d) continue;
              if (used[d]) {
                bucket[d] = bucket[d] * bases[j] % mod;
              } else {
                bucket[d] = bases[j];
                used[d] = 1;
              }
            }
            // sum_d d * bucket[d] as running products from the top digit down.
            mpz_class running = 1, acc = 1;
            bool any = false;
            for (size_t d = bucket.size() - 1; d >= 1; --d) {
              if (used[d]) {
                running = running * bucket[d] % mod;
                any = true;
              }
              if (any) acc = acc * running % mod;
            }
            result = result * acc % mod;
          }
          partial[ti] = result;
        }
      },
      t);
  mpz_class out = 1;
  for (const auto& p : partial) out = out * p % mod;
  return out;
}

std::vector<mpz_class> BatchWeights(const ThresholdPublicKey& pub, int index,
                                    const std::vector<mpz_class>& ciphertexts,
                                    const std::vector<mpz_class>& shares) {
  const size_t w = ByteLength(pub.paillier().n2());
  Sha256Hasher all;
  all.Update("ronghe.threshold.batch.v1", 25);
  HashInt(all, pub.paillier().n(), w);
  uint32_t idx = static_cast<uint32_t>(index);
  all.Update(&idx, sizeof idx);
  uint64_t count = ciphertexts.size();
  all.Update(&count, sizeof count);
  for (size_t j = 0; j < ciphertexts.size(); ++j) {
    HashInt(all, ciphertexts[j], w);
    HashInt(all, shares[j], w);
  }
  std::string seed = all.FinalRaw();
  std::vector<mpz_class> e(ciphertexts.size());
  for (uint64_t j = 0; j < e.size(); ++j) {
    Sha256Hasher h;
    h.Update(seed.data(), seed.size());
    h.Update(&j, sizeof j);
    std::string d = h.FinalRaw();
    mpz_import(e[j].get_mpz_t(), 16, 1, 1, 1, 0, d.data());  // 128-bit weight
    if (e[j] == 0) e[j] = 1;
  }
  return e;
}

namespace {
// (C^4, C_i^2) for a batch; for a single ciphertext C = c itself.
std::pair<mpz_class, mpz_class> BatchStatement(const ThresholdPublicKey& pub, int index,
                                               const std::vector<mpz_class>& cs,
                                               const std::vector<mpz_class>& shares, int threads) {
  const mpz_class& n2 = pub.paillier().n2();
  mpz_class C, Ci;
  if (cs.size() == 1) {
    C = cs[0];
    Ci = shares[0];
  } else {
    auto e = BatchWeights(pub, index, cs, shares);
    C = MultiExp(cs, e, n2, threads);
    Ci = MultiExp(shares, e, n2, threads);
  }
  mpz_class C2 = C * C % n2;
  return {C2 * C2 % n2, Ci * Ci % n2};
}
}  // namespace

Result<PartialDecryption> PartialDecrypt(const ThresholdPublicKey& pub, const KeyShare& share,
                                         const std::vector<mpz_class>& ciphertexts, int threads) {
  if (share.index < 1 || share.index > pub.parties())
    return InvalidArgument("share index out of range");
  if (ciphertexts.empty()) return InvalidArgument("nothing to decrypt");
  for (size_t j = 0; j < ciphertexts.size(); ++j) {
    RETURN_IF_ERROR(pub.paillier().Validate(ciphertexts[j], "ciphertext " + std::to_string(j)));
  }
  PartialDecryption out;
  out.index = share.index;
  out.shares.resize(ciphertexts.size());
  const mpz_class exp = 2 * pub.delta() * share.s;
  const mpz_class& n2 = pub.paillier().n2();
  ParallelFor(
      static_cast<int64_t>(ciphertexts.size()),
      [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) out.shares[j] = PowSecret(ciphertexts[j], exp, n2);
      },
      threads);
  out.proof = ProveBatch(pub, share, ciphertexts, out.shares, threads);
  return out;
}

EqualityProof ProveBatch(const ThresholdPublicKey& pub, const KeyShare& share,
                         const std::vector<mpz_class>& ciphertexts,
                         const std::vector<mpz_class>& shares, int threads) {
  auto [u, ui] = BatchStatement(pub, share.index, ciphertexts, shares,
                                threads > 0 ? threads : DefaultThreads());
  return ProveEquality(pub, share, u, ui);
}

Status VerifyPartial(const ThresholdPublicKey& pub, const std::vector<mpz_class>& ciphertexts,
                     const PartialDecryption& partial, int threads) {
  const std::string who = "party " + std::to_string(partial.index);
  if (partial.index < 1 || partial.index > pub.parties()) {
    return InvalidArgument(who + ": not a party of this key");
  }
  if (partial.shares.size() != ciphertexts.size()) {
    return InvalidArgument(who + ": sent " + std::to_string(partial.shares.size()) +
                           " shares for " + std::to_string(ciphertexts.size()) + " ciphertexts");
  }
  if (ciphertexts.empty()) return InvalidArgument(who + ": empty batch");
  for (size_t j = 0; j < partial.shares.size(); ++j) {
    RETURN_IF_ERROR(
        pub.paillier().Validate(partial.shares[j], who + ": share " + std::to_string(j)));
  }
  auto [u, ui] = BatchStatement(pub, partial.index, ciphertexts, partial.shares,
                                threads > 0 ? threads : DefaultThreads());
  if (!VerifyEquality(pub, partial.index, u, ui, partial.proof)) {
    return InvalidArgument(
        who + ": proof of partial decryption does not verify (wrong or forged shares)");
  }
  return Status::OK();
}

Result<mpz_class> Combine(const ThresholdPublicKey& pub, const std::vector<int>& indices,
                          const std::vector<mpz_class>& shares) {
  if (indices.size() != shares.size())
    return InvalidArgument("combine: indices and shares differ in count");
  std::set<int> distinct(indices.begin(), indices.end());
  if (distinct.size() != indices.size()) return InvalidArgument("combine: duplicate party index");
  if (static_cast<int>(indices.size()) < pub.threshold()) {
    return FailedPrecondition("combine: " + std::to_string(indices.size()) + " shares, " +
                              std::to_string(pub.threshold()) + " needed");
  }
  const int t = pub.threshold();
  const mpz_class& n2 = pub.paillier().n2();
  mpz_class c = 1;
  // Lagrange coefficients over the parties actually used (the first t), not all l.
  for (int a = 0; a < t; ++a) {
    int i = indices[a];
    if (i < 1 || i > pub.parties()) return InvalidArgument("combine: party index out of range");
    mpz_class num = pub.delta(), den = 1;
    for (int b = 0; b < t; ++b) {
      if (b == a) continue;
      num *= indices[b];
      den *= indices[b] - i;
    }
    mpz_class lambda = num / den;  // exact: Delta makes it an integer
    c = c * Pow(shares[a], 2 * lambda, n2) % n2;
  }
  mpz_class m = ((c - 1) / pub.paillier().n()) * pub.combine_factor() % pub.paillier().n();
  return m;
}

Result<std::vector<mpz_class>> CombineVector(const ThresholdPublicKey& pub,
                                             const std::vector<PartialDecryption>& partials,
                                             int threads) {
  if (static_cast<int>(partials.size()) < pub.threshold()) {
    return FailedPrecondition("only " + std::to_string(partials.size()) +
                              " parties gave valid shares; " + std::to_string(pub.threshold()) +
                              " are needed");
  }
  size_t len = partials[0].shares.size();
  std::vector<int> idx;
  for (const auto& p : partials) {
    if (p.shares.size() != len)
      return InvalidArgument("combine: partial decryptions differ in length");
    idx.push_back(p.index);
  }
  std::vector<mpz_class> out(len);
  Mutex mu;  // guards err (a local: the analysis cannot annotate it)
  Status err;
  ParallelFor(
      static_cast<int64_t>(len),
      [&](int64_t b, int64_t e) {
        std::vector<mpz_class> s(partials.size());
        for (int64_t j = b; j < e; ++j) {
          for (size_t k = 0; k < partials.size(); ++k) s[k] = partials[k].shares[j];
          auto r = Combine(pub, idx, s);
          if (!r.ok()) {
            MutexLock lock(&mu);
            err = r.status();
            return;
          }
          out[j] = *r;
        }
      },
      threads);
  if (!err.ok()) return err;
  return out;
}

}  // namespace ronghe::crypto
