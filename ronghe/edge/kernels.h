// The edge runtime's inner loops: matrix-vector products in fp32 and int8. On x86-64 an AVX2+FMA
// version is chosen at run time when the CPU has it; every other CPU (ARM, RISC-V, old x86) runs
// the portable loops, which the compiler vectorises for its target. int8 products accumulate in
// int32, so both paths give bit-identical int8 results.
#pragma once

#include <cstdint>

namespace ronghe::edge {

// y[r] = sum_c w[r * cols + c] * x[c] (+ bias[r] when bias is not null), r < rows.
void MatVecF32(const float* w, const float* x, const float* bias, int64_t rows, int64_t cols,
               float* y);
// The int8 form: y[r] = (sum_c q[r * cols + c] * qx[c]) * row_scale[r] * act_scale (+ bias[r]).
void MatVecI8(const int8_t* q, const int8_t* qx, const float* row_scale, float act_scale,
              const float* bias, int64_t rows, int64_t cols, float* y);
// qx[i] = clamp(round(x[i] / act_scale), -127, 127).
void QuantizeActivations(const float* x, int64_t n, float act_scale, int8_t* qx);

// "avx2+fma" or "portable": what this process runs.
const char* KernelName();

}  // namespace ronghe::edge
