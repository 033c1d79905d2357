// The int8 epilogue of one micro-tile row on AVX-512, shared by lowp_avx512vnni.cpp and
// lowp_amx.cpp (both compiled with AVX-512 flags). Internal linkage, like lowp_simd.h.
#pragma once

#include "kernels/vec_avx512.h"
#include "kernels/lowp_simd.h"

namespace bertcpu {
namespace {

// The int8 weights of input `top` for 16 consecutive columns of a panel packed in groups of 4 K
// values (bp: the panel, nr its columns), as floats: each column's 4-byte group holds the byte
// top % 4 of it, taken out with two shifts.
inline __m512 top_weights16(const int8_t* bp, int nr, int top, int vector) {
  const __m512i groups =
      _mm512_loadu_si512(bp + packed_int8_offset(nr, 4, top) - top % 4 + 64 * vector);
  const __m512i low_byte = _mm512_sll_epi32(groups, _mm_cvtsi32_si128(24 - 8 * (top % 4)));
  return _mm512_cvtepi32_ps(_mm512_srai_epi32(low_byte, 24));
}

// row[0, n) = act((float(acc - a_zero * colsum) * a_scale + top_value * float(qw[top][j])) *
// w_scale + bias) over NV vectors of 16 int32 sums, left to right without FMA:
// Int8Kernels::gemm_micro's formula. bp: the panel (groups of 4 K values, nr columns).
template <int NV>
__attribute__((always_inline)) inline void finish_int8_row_avx512(
    const int32_t* acc, const int32_t* colsum, float a_scale, int32_t a_zero, int top,
    float top_value, const int8_t* bp, int nr, const float* w_scale, const float* bias,
    float* row, int n, Activation act) {
  const __m512 sa = _mm512_set1_ps(a_scale);
  const __m512i zp = _mm512_set1_epi32(a_zero);
  VecAvx512 r[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const __m512i v = _mm512_sub_epi32(_mm512_loadu_si512(acc + 16 * j),
                                       _mm512_mullo_epi32(zp, _mm512_loadu_si512(colsum + 16 * j)));
    r[j].v = rounded(_mm512_mul_ps(_mm512_cvtepi32_ps(v), sa));
  }
  if (top_value != 0.0f) {
    const __m512 tv = _mm512_set1_ps(top_value);
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      r[j].v = _mm512_add_ps(r[j].v, rounded(_mm512_mul_ps(tv, top_weights16(bp, nr, top, j))));
  }
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j)
    r[j].v = rounded(_mm512_mul_ps(r[j].v, _mm512_loadu_ps(w_scale + 16 * j)));
  finish_row<VecAvx512, NV>(r, row, n, false, bias, act);
}

}  // namespace
}  // namespace bertcpu
