// The int8 epilogue of a micro-tile on ymm registers, shared by the AVX2 kernel (lowp_avx2.cpp,
// K groups of 2) and the ymm vpdpbusd kernels (lowp_int8_ymm.h, K groups of 4). Internal linkage,
// like lowp_simd.h.
#pragma once

#include <immintrin.h>

#include "kernels/lowp_kernels.h"
#include "kernels/vec_avx2.h"
#include "kernels/lowp_simd.h"

namespace bertcpu {
namespace {

// The int8 weights of input `top` for 8 consecutive columns of a panel of nr columns packed in
// groups of KG (2 or 4) K values, as floats: each column's group, widened to an int32 lane, holds
// the byte top % KG of it, taken out with two shifts.
template <int KG>
inline __m256 top_weights8(const int8_t* bp, int nr, int top, int vector) {
  static_assert(KG == 2 || KG == 4, "K groups of 2 or 4 bytes");
  const int8_t* groups = bp + packed_int8_offset(nr, KG, top) - top % KG + 8 * KG * vector;
  const __m256i lanes =
      KG == 4 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(groups))
              : _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(groups)));
  const __m256i low_byte = _mm256_sll_epi32(lanes, _mm_cvtsi32_si128(24 - 8 * (top % KG)));
  return _mm256_cvtepi32_ps(_mm256_srai_epi32(low_byte, 24));
}

// Rows [0, M) of C = act((float(acc - a_zero * colsum) * a_scale + a_top_value * float(qw[a_top]))
// * w_scale + bias) from an M x (8 * NV) tile of int32 sums, left to right without FMA:
// Int8Kernels::gemm_micro's formula. bp: the panel (8 * NV columns in groups of KG K values).
template <int M, int NV, int KG>
__attribute__((always_inline)) inline void finish_int8_tile_ymm(
    const int32_t (*tile)[8 * NV], const int32_t* colsum, const float* a_scale,
    const int32_t* a_zero, const int32_t* a_top, const float* a_top_value, const int8_t* bp,
    const float* w_scale, const float* bias, float* c, int ldc, int n, Activation act) {
  for (int i = 0; i < M; ++i) {
    const __m256 sa = _mm256_set1_ps(a_scale[i]);
    const __m256i zp = _mm256_set1_epi32(a_zero[i]);
    VecAvx2 r[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const __m256i zp_colsum = _mm256_mullo_epi32(
          zp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(colsum + 8 * j)));
      const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(tile[i] + 8 * j)), zp_colsum));
      r[j].v = rounded(_mm256_mul_ps(v, sa));
    }
    if (a_top_value[i] != 0.0f) {
      const __m256 tv = _mm256_set1_ps(a_top_value[i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        r[j].v = _mm256_add_ps(
            r[j].v, rounded(_mm256_mul_ps(tv, top_weights8<KG>(bp, 8 * NV, a_top[i], j))));
    }
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      r[j].v = rounded(_mm256_mul_ps(r[j].v, _mm256_loadu_ps(w_scale + 8 * j)));
    finish_row<VecAvx2, NV>(r, c + i * ldc, n, false, bias, act);
  }
}

}  // namespace
}  // namespace bertcpu
