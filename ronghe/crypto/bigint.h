// Big-integer helpers on GMP (mpz_class is the RAII owner of every mpz_t here). Randomness comes
// only from the OS CSPRNG (OpenSSL RAND_bytes, seeded from getrandom), never from GMP's own
// generators or rand().
#pragma once

#include <gmpxx.h>

#include <string>
#include <string_view>

#include "ronghe/base/status.h"

namespace ronghe::crypto {

// Uniform in [0, 2^bits).
mpz_class RandomBits(int bits);
// Uniform in [0, bound), bound > 0 (rejection sampling, no modulo bias).
mpz_class RandomBelow(const mpz_class& bound);
// Uniform unit of Z_n^* (gcd(x, n) = 1), 0 < x < n.
mpz_class RandomUnit(const mpz_class& n);

// A random prime of exactly `bits` bits; with `safe`, p = 2p' + 1 with p' prime (OpenSSL's
// BN_generate_prime_ex, which also sieves and runs Miller-Rabin rounds for 2^-128 error).
mpz_class RandomPrime(int bits, bool safe);

// Lower-case hex without prefix; "0" for zero. Negative numbers are not used in key files.
std::string ToHex(const mpz_class& x);
// Parses hex (no prefix, no sign). `what` names the field in the error.
Result<mpz_class> FromHex(std::string_view hex, const std::string& what);

// Fixed-width big-endian bytes (for hashing); x must fit in `len` bytes.
std::string ToBytes(const mpz_class& x, size_t len);
size_t ByteLength(const mpz_class& x);

// Modular exponentiation with a secret exponent, constant time in the exponent's bits (OpenSSL
// BN_mod_exp_mont_consttime; GMP's mpz_powm_sec as a fallback). REQUIRES: odd modulus, exp >= 0.
mpz_class PowSecret(const mpz_class& base, const mpz_class& exp, const mpz_class& mod);
// Public exponent (any sign: a negative exponent inverts the base first).
mpz_class Pow(const mpz_class& base, const mpz_class& exp, const mpz_class& mod);

}  // namespace ronghe::crypto
