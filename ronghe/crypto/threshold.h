// Threshold Paillier, t of l parties, with a trusted dealer (Damgard-Jurik 2001 with s = 1;
// equivalently Fouque-Poupard-Stern 2000). Nobody holds the factorisation after the ceremony:
// decryption needs partial decryptions from any t parties, each proven correct.
//
//   dealer:     safe primes p = 2p'+1, q = 2q'+1, n = pq, m = p'q'; d = 0 (mod m), d = 1 (mod n);
//               s_i = f(i) for a random degree t-1 polynomial over Z_{nm} with f(0) = d;
//               Delta = l!; v a random square mod n^2; v_i = v^(Delta * s_i) mod n^2.
//   party i:    c_i = c^(2 * Delta * s_i) mod n^2, with a proof that
//               log_{c^4}(c_i^2) = log_v(v_i) (Chaum-Pedersen, Fiat-Shamir over SHA-256, bound
//               to n, the ciphertext, the share, v, v_i and i).
//   combine:    c' = prod c_i^(2 * lambda_i), lambda_i = Delta * prod_{j != i} j / (j - i) over the
//               parties present; m = L(c') * (4 * Delta^2)^-1 mod n.
//
// Batches (many ciphertexts, one party): the prover derives 128-bit weights e_j by hashing all
// ciphertexts and shares, forms C = prod c_j^e_j and C_i = prod c_ij^e_j (multi-exponentiation),
// and proves the same statement once for (C, C_i). A wrong share anywhere in the batch makes the
// check fail except with probability about 2^-128, and the failure names the party.
#pragma once

#include <gmpxx.h>

#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"
#include "ronghe/crypto/paillier.h"

namespace ronghe::crypto {

class ThresholdPublicKey {
 public:
  // Checks the parameters fit together (1 <= t <= l, one verification key per party, v and each
  // v_i units mod n^2, Delta = l!).
  static Result<std::shared_ptr<const ThresholdPublicKey>> Create(
      std::shared_ptr<const PublicKey> paillier, int parties, int threshold, const mpz_class& v,
      std::vector<mpz_class> verification_keys);

  const PublicKey& paillier() const { return *paillier_; }
  std::shared_ptr<const PublicKey> paillier_ptr() const { return paillier_; }
  int parties() const { return parties_; }
  int threshold() const { return threshold_; }
  const mpz_class& delta() const { return delta_; }
  const mpz_class& v() const { return v_; }
  // REQUIRES: 1 <= index <= parties().
  const mpz_class& verification_key(int index) const { return vk_[index - 1]; }
  const std::vector<mpz_class>& verification_keys() const { return vk_; }
  // (4 * Delta^2)^-1 mod n, the last factor of Combine.
  const mpz_class& combine_factor() const { return combine_factor_; }
  // Fingerprint of the Paillier key plus the threshold parameters and verification keys.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  ThresholdPublicKey() = default;
  std::shared_ptr<const PublicKey> paillier_;
  int parties_ = 0, threshold_ = 0;
  mpz_class delta_, v_, combine_factor_;
  std::vector<mpz_class> vk_;
  std::string fingerprint_;
};

struct KeyShare {
  int index = 0;  // 1..parties
  mpz_class s;    // secret: f(index) mod n*m
};

struct ThresholdKeys {
  std::shared_ptr<const ThresholdPublicKey> public_key;
  std::vector<KeyShare> shares;  // shares[i] has index i + 1
};

struct DealerOptions {
  int bits = 2048;    // Default: 2048. 2048 or 3072 (smaller only with insecure_for_testing).
  int parties = 5;    // Default: 5.
  int threshold = 3;  // Default: 3.
  bool insecure_for_testing = false;  // allows small keys so unit tests run fast
};

// The key ceremony. Secrets come from the OS CSPRNG; p, q, m, d and the polynomial are wiped.
Result<ThresholdKeys> DealThresholdKeys(const DealerOptions& options);

// Checks v_i == v^(Delta * s_i): a share of another key, or a corrupt one, fails.
Status CheckShare(const ThresholdPublicKey& pub, const KeyShare& share);

// Non-interactive proof that log_{u}(u_i) = log_v(v_i) with u = C^4, u_i = C_i^2.
struct EqualityProof {
  mpz_class e;  // challenge, 256 bits
  mpz_class z;  // response r + e * Delta * s_i over the integers
};

// One party's partial decryptions of a vector of ciphertexts, with one proof for all of them.
struct PartialDecryption {
  int index = 0;
  std::vector<mpz_class> shares;
  EqualityProof proof;
};

// Partial decryption of each ciphertext (threads: 0 = all cores) plus the batch proof.
// Ciphertexts are validated first.
Result<PartialDecryption> PartialDecrypt(const ThresholdPublicKey& pub, const KeyShare& share,
                                         const std::vector<mpz_class>& ciphertexts,
                                         int threads = 0);

// Verifies a party's shares for `ciphertexts`. Errors name the party:
// "party 3: proof of partial decryption does not verify".
Status VerifyPartial(const ThresholdPublicKey& pub, const std::vector<mpz_class>& ciphertexts,
                     const PartialDecryption& partial, int threads = 0);

// Combines shares of one ciphertext from distinct parties (at least t; the first t are used).
Result<mpz_class> Combine(const ThresholdPublicKey& pub, const std::vector<int>& indices,
                          const std::vector<mpz_class>& shares);
// Combines verified partial decryptions of a vector, element by element.
Result<std::vector<mpz_class>> CombineVector(const ThresholdPublicKey& pub,
                                             const std::vector<PartialDecryption>& partials,
                                             int threads = 0);

// The batch proof for shares of `ciphertexts` (what PartialDecrypt attaches), for callers that
// already hold the shares.
EqualityProof ProveBatch(const ThresholdPublicKey& pub, const KeyShare& share,
                         const std::vector<mpz_class>& ciphertexts,
                         const std::vector<mpz_class>& shares, int threads = 0);

// Lower-level pieces, exposed for tests and benchmarks.
EqualityProof ProveEquality(const ThresholdPublicKey& pub, const KeyShare& share,
                            const mpz_class& u, const mpz_class& ui);
bool VerifyEquality(const ThresholdPublicKey& pub, int index, const mpz_class& u,
                    const mpz_class& ui, const EqualityProof& proof);
// prod bases[j]^exps[j] mod `mod` (Pippenger's bucket method), split over `threads`.
mpz_class MultiExp(const std::vector<mpz_class>& bases, const std::vector<mpz_class>& exps,
                   const mpz_class& mod, int threads = 1);
// The batch weights: 128-bit e_j from SHA-256 over all ciphertexts, shares and the index.
std::vector<mpz_class> BatchWeights(const ThresholdPublicKey& pub, int index,
                                    const std::vector<mpz_class>& ciphertexts,
                                    const std::vector<mpz_class>& shares);

}  // namespace ronghe::crypto
