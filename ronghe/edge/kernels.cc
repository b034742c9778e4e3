#include "ronghe/edge/kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#define RONGHE_EDGE_X86 1
#endif

namespace ronghe::edge {
namespace {

void MatVecF32Portable(const float* w, const float* x, const float* bias, int64_t rows,
                       int64_t cols, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    float s = 0;
    for (int64_t c = 0; c < cols; ++c) s += row[c] * x[c];
    y[r] = bias ? s + bias[r] : s;
  }
}

int32_t DotI8Portable(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += int32_t{a[i]} * int32_t{b[i]};
  return s;
}

#ifdef RONGHE_EDGE_X86
__attribute__((target("avx2,fma"))) float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 0x55));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) void MatVecF32Avx2(const float* w, const float* x,
                                                       const float* bias, int64_t rows,
                                                       int64_t cols, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 8), _mm256_loadu_ps(x + c + 8), a1);
    }
    for (; c + 8 <= cols; c += 8)
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
    float s = HorizontalSum(_mm256_add_ps(a0, a1));
    for (; c < cols; ++c) s += row[c] * x[c];
    y[r] = bias ? s + bias[r] : s;
  }
}

__attribute__((target("avx2"))) int32_t DotI8Avx2(const int8_t* a, const int8_t* b, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i va = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  int32_t total = _mm_cvtsi128_si32(s);
  for (; i < n; ++i) total += int32_t{a[i]} * int32_t{b[i]};
  return total;
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#else
bool HasAvx2() { return false; }
#endif

}  // namespace

void MatVecF32(const float* w, const float* x, const float* bias, int64_t rows, int64_t cols,
               float* y) {
#ifdef RONGHE_EDGE_X86
  if (HasAvx2()) return MatVecF32Avx2(w, x, bias, rows, cols, y);
#endif
  MatVecF32Portable(w, x, bias, rows, cols, y);
}

void MatVecI8(const int8_t* q, const int8_t* qx, const float* row_scale, float act_scale,
              const float* bias, int64_t rows, int64_t cols, float* y) {
  auto dot = DotI8Portable;
#ifdef RONGHE_EDGE_X86
  if (HasAvx2()) dot = DotI8Avx2;
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const float v = static_cast<float>(dot(q + r * cols, qx, cols)) * (row_scale[r] * act_scale);
    y[r] = bias ? v + bias[r] : v;
  }
}

void QuantizeActivations(const float* x, int64_t n, float act_scale, int8_t* qx) {
  const float inv = act_scale > 0 ? 1.0f / act_scale : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] * inv);
    if (v != v) v = 0;  // NaN has no int8; the float parts around still carry it to the output
    qx[i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
  }
}

const char* KernelName() { return HasAvx2() ? "avx2+fma" : "portable"; }

}  // namespace ronghe::edge
