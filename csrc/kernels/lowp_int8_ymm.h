// The int8 kernels on ymm registers that multiply unsigned activation bytes by signed weight bytes,
// 4 per int32 lane: vpdpbusd, VEX-encoded for AVX-VNNI (lowp_avxvnni.cpp) or EVEX-encoded for
// AVX512_VNNI + VL (lowp_avx512vnni.cpp, the test twin of the AVX-VNNI kernel), or AVX2's
// vpmaddubsw + vpmaddwd on 7-bit activations (lowp_avx2.cpp): one source, the instructions
// supplied by the translation unit (Dot4) with the largest activation code they take (QMax).
// Packed like the AVX-512 VNNI kernel: K in groups of 4, each ymm of weights 8 columns x 4 bytes.
// Internal linkage and no library header, like kernels_simd.h.
#pragma once

#include <immintrin.h>

#include "kernels/lowp_kernels.h"
#include "kernels/vec_avx2.h"
#include "kernels/lowp_simd.h"
#include "kernels/lowp_int8_finish_ymm.h"

namespace bertcpu {
namespace {

constexpr int kYmmGroup = 4;

// clamp(rint(x * inv) + zp, 0, QMax) of 32 floats as bytes in order: vcvtps2dq rounds to nearest
// even like the generic path; packs_epi32 cannot saturate (the sums lie within a step of
// 0..QMax), packus_epi16 clamps to 0..255 and, for QMax 127, min_epu8 to 127. Both packs
// interleave 64-bit pieces of their 128-bit lanes, which leaves the 4-byte groups in the order
// 0, 2, 4, 6, 1, 3, 5, 7; the permute restores it.
template <int QMax>
inline __m256i quantize32(const float* x, __m256 inv, __m256i zp) {
  __m256i q[4];
  for (int j = 0; j < 4; ++j)
    q[j] = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), inv)), zp);
  __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]),
                                      _mm256_packs_epi32(q[2], q[3]));
  if constexpr (QMax < 255) bytes = _mm256_min_epu8(bytes, _mm256_set1_epi8(QMax));
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

template <int QMax>
float quantize_row_ymm(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                       int32_t* top, float* top_value) {
  const RowQuantTop row = row_quant_without_top<VecAvx2>(x, k, QMax);
  const RowQuant& rq = row.rq;
  const __m256 inv = _mm256_set1_ps(rq.inv);
  const __m256i zp = _mm256_set1_epi32(rq.zero_point);
  int i = 0;
  for (; i + 32 <= k; i += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), quantize32<QMax>(x + i, inv, zp));
  for (; i < k; ++i)
    out[i] = static_cast<uint8_t>(quantize_scalar(x[i] * rq.inv, rq.zero_point, QMax));
  for (i = k; i < kp; ++i) out[i] = static_cast<uint8_t>(rq.zero_point);
  if (k > 0) out[row.top] = static_cast<uint8_t>(rq.zero_point);
  *zero_point = rq.zero_point;
  *top = row.top;
  *top_value = row.value;
  return rq.scale;
}

// An M x (8 * NV) micro-tile; Dot4::dot(acc, a, b) adds to each int32 lane of acc the sum of the
// 4 products of a's unsigned bytes and b's signed bytes in that lane.
template <class Dot4, int M, int NV>
inline void int8_ymm_rows(int kp, const uint8_t* a, int lda, const int8_t* bp,
                          const int32_t* colsum, const float* a_scale, const int32_t* a_zero,
                          const int32_t* a_top, const float* a_top_value, const float* w_scale,
                          const float* bias, float* c, int ldc, int n, Activation act) {
  constexpr int kNr = 8 * NV;
  __m256i acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_setzero_si256();
  // Moving pointers and per-row offsets, as in kernels_simd.h.
  ptrdiff_t row_offset[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) row_offset[i] = static_cast<ptrdiff_t>(i) * lda;
  const int8_t* b_k = bp;
  for (const uint8_t *a_k = a, *a_end = a + kp; a_k != a_end;
       a_k += kYmmGroup, b_k += kYmmGroup * kNr) {
    __m256i b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      b[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_k + 32 * j));
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m256i ai = _mm256_set1_epi32(load_u32(a_k + row_offset[i]));
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = Dot4::dot(acc[i][j], ai, b[j]);
    }
  }
  // Through memory, as in lowp_avx512vnni.cpp: keeps the accumulators in registers in the K loop.
  alignas(32) int32_t tile[M][kNr];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile[i] + 8 * j), acc[i][j]);
  finish_int8_tile_ymm<M, NV, kYmmGroup>(tile, colsum, a_scale, a_zero, a_top, a_top_value, bp,
                                         w_scale, bias, c, ldc, n, act);
}

template <class Dot4, int MR, int NV>
void int8_ymm_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                    const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                    const float* a_top_value, const float* w_scale, const float* bias, float* c,
                    int ldc, int m, int n, Activation act) {
  with_rows<MR>(m, [&](auto rows) {
    int8_ymm_rows<Dot4, decltype(rows)::value, NV>(kp, a, lda, bp, colsum, a_scale, a_zero, a_top,
                                                   a_top_value, w_scale, bias, c, ldc, n, act);
  });
}

// The table of a ymm int8 kernel with an MR x (8 * NV) tile and activations 0..QMax.
template <class Dot4, int MR, int NV, int QMax = 255>
Int8Kernels int8_ymm_table(Isa isa, const char* name) {
  Int8Kernels table{isa, name, MR, 8 * NV, kYmmGroup, quantize_row_ymm<QMax>,
                    int8_ymm_micro<Dot4, MR, NV>};
  table.a_max = QMax;
  return table;
}

}  // namespace
}  // namespace bertcpu
