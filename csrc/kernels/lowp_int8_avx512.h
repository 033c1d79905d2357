// The int8 kernels on zmm registers: the epilogue of one micro-tile row (shared by the AMX kernels,
// lowp_amx.cpp), the activation quantizer and an 8 x 48 micro-tile (24 zmm accumulators; a group
// of 4 activations broadcast, three vectors of 16 columns x 4 weights per group), one source for
// AVX512_VNNI (lowp_avx512vnni.cpp: vpdpbusd) and AVX512BW without it (lowp_avx512bw.cpp:
// vpmaddubsw + vpmaddwd on 7-bit activations), the instructions supplied by the translation unit
// (Dot4) with the largest activation code they take (QMax), as lowp_int8_ymm.h does on ymm.
// Internal linkage, like lowp_simd.h.
#pragma once

#include "kernels/lowp_kernels.h"
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

constexpr int kZmmMr = 8;
constexpr int kZmmNv = 3;  // vectors of 16 columns
constexpr int kZmmNr = 16 * kZmmNv;
constexpr int kZmmGroup = 4;

// clamp(rint(x * inv) + zp, 0, QMax) for the lanes of x (vcvtps2dq rounds to nearest even, like
// the generic path); for QMax 255 the unsigned saturation of vpmovusdb clamps at the top.
template <int QMax>
inline __m512i quantize16(__m512 x, __m512 inv, __m512i zp) {
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv)), zp);
  const __m512i at_least_0 = _mm512_max_epi32(q, _mm512_setzero_si512());
  if constexpr (QMax < 255) return _mm512_min_epi32(at_least_0, _mm512_set1_epi32(QMax));
  return at_least_0;
}

template <int QMax>
float quantize_row_zmm(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                       int32_t* top, float* top_value) {
  const RowQuantTop row = row_quant_without_top<VecAvx512>(x, k, QMax);
  const RowQuant& rq = row.rq;
  const __m512 inv = _mm512_set1_ps(rq.inv);
  const __m512i zp = _mm512_set1_epi32(rq.zero_point);
  int i = 0;
  for (; i + 16 <= k; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm512_cvtusepi32_epi8(quantize16<QMax>(_mm512_loadu_ps(x + i), inv, zp)));
  if (i < k) {
    const __mmask16 mask = VecAvx512::tail_mask(k - i);
    _mm512_mask_cvtusepi32_storeu_epi8(
        out + i, mask, quantize16<QMax>(_mm512_maskz_loadu_ps(mask, x + i), inv, zp));
  }
  for (i = k; i < kp; ++i) out[i] = static_cast<uint8_t>(rq.zero_point);
  if (k > 0) out[row.top] = static_cast<uint8_t>(rq.zero_point);
  *zero_point = rq.zero_point;
  *top = row.top;
  *top_value = row.value;
  return rq.scale;
}

// An M x 48 micro-tile; Dot4::dot(acc, a, b) adds to each int32 lane of acc the sum of the 4
// products of a's unsigned bytes and b's signed bytes in that lane.
template <class Dot4, int M>
inline void int8_zmm_rows(int kp, const uint8_t* a, int lda, const int8_t* bp,
                          const int32_t* colsum, const float* a_scale, const int32_t* a_zero,
                          const int32_t* a_top, const float* a_top_value, const float* w_scale,
                          const float* bias, float* c, int ldc, int n, Activation act) {
  __m512i acc[M][kZmmNv];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kZmmNv; ++j) acc[i][j] = _mm512_setzero_si512();
  // Moving pointers and per-row offsets, as in kernels_simd.h (int indices cost address
  // arithmetic per broadcast under -fwrapv).
  ptrdiff_t row_offset[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) row_offset[i] = static_cast<ptrdiff_t>(i) * lda;
  const int8_t* b_k = bp;
  for (const uint8_t *a_k = a, *a_end = a + kp; a_k != a_end;
       a_k += kZmmGroup, b_k += kZmmGroup * kZmmNr) {
    __m512i b[kZmmNv];
#pragma GCC unroll 4
    for (int j = 0; j < kZmmNv; ++j) b[j] = _mm512_loadu_si512(b_k + 64 * j);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512i ai = _mm512_set1_epi32(load_u32(a_k + row_offset[i]));
#pragma GCC unroll 4
      for (int j = 0; j < kZmmNv; ++j) acc[i][j] = Dot4::dot(acc[i][j], ai, b[j]);
    }
  }
  // Through memory: an epilogue reading the accumulators directly makes GCC keep them in memory
  // in the K loop too.
  alignas(64) int32_t tile[M][kZmmNr];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kZmmNv; ++j) _mm512_store_si512(tile[i] + 16 * j, acc[i][j]);
  for (int i = 0; i < M; ++i)
    finish_int8_row_avx512<kZmmNv>(tile[i], colsum, a_scale[i], a_zero[i], a_top[i],
                                   a_top_value[i], bp, kZmmNr, w_scale, bias, c + i * ldc, n, act);
}

template <class Dot4>
void int8_zmm_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                    const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                    const float* a_top_value, const float* w_scale, const float* bias, float* c,
                    int ldc, int m, int n, Activation act) {
  with_rows<kZmmMr>(m, [&](auto rows) {
    int8_zmm_rows<Dot4, decltype(rows)::value>(kp, a, lda, bp, colsum, a_scale, a_zero, a_top,
                                               a_top_value, w_scale, bias, c, ldc, n, act);
  });
}

// The table of a zmm int8 kernel with activations 0..QMax.
template <class Dot4, int QMax>
Int8Kernels int8_zmm_table(Isa isa, const char* name) {
  Int8Kernels table{isa,       name, kZmmMr, kZmmNr, kZmmGroup, quantize_row_zmm<QMax>,
                    int8_zmm_micro<Dot4>};
  table.a_max = QMax;
  return table;
}

}  // namespace
}  // namespace bertcpu
