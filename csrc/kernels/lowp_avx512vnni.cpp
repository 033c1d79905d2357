// The int8 kernels for AVX-512 with AVX512_VNNI: an 8 x 48 micro-tile of vpdpbusd (24 zmm
// accumulators; a group of 4 activations broadcast, three vectors of 16 columns x 4 weights per
// group). vpdpbusd multiplies unsigned by signed bytes: the activations' 0..255 values as they
// are, the int8 weights. Called only when the CPU has AVX512_VNNI (gemm_lowp.cpp).
#include "kernels/lowp_kernels.h"
#include "kernels/vec_avx512.h"
#include "kernels/lowp_simd.h"
#include "kernels/lowp_int8_avx512.h"
#include "kernels/lowp_int8_ymm.h"

namespace bertcpu {

namespace {

constexpr int kMr = 8;
constexpr int kNv = 3;  // vectors of 16 columns
constexpr int kNr = 16 * kNv;
constexpr int kGroup = 4;

// max(rint(x * inv) + zp, 0) for the lanes of x (vcvtps2dq rounds to nearest even, like the
// generic path); the unsigned saturation of vpmovusdb then clamps at 255.
inline __m512i quantize16(__m512 x, __m512 inv, __m512i zp) {
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv)), zp);
  return _mm512_max_epi32(q, _mm512_setzero_si512());
}

float quantize_row(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                   int32_t* top, float* top_value) {
  const RowQuantTop row = row_quant_without_top<VecAvx512>(x, k);
  const RowQuant& rq = row.rq;
  const __m512 inv = _mm512_set1_ps(rq.inv);
  const __m512i zp = _mm512_set1_epi32(rq.zero_point);
  int i = 0;
  for (; i + 16 <= k; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm512_cvtusepi32_epi8(quantize16(_mm512_loadu_ps(x + i), inv, zp)));
  if (i < k) {
    const __mmask16 mask = VecAvx512::tail_mask(k - i);
    _mm512_mask_cvtusepi32_storeu_epi8(
        out + i, mask, quantize16(_mm512_maskz_loadu_ps(mask, x + i), inv, zp));
  }
  for (i = k; i < kp; ++i) out[i] = static_cast<uint8_t>(rq.zero_point);
  if (k > 0) out[row.top] = static_cast<uint8_t>(rq.zero_point);
  *zero_point = rq.zero_point;
  *top = row.top;
  *top_value = row.value;
  return rq.scale;
}

template <int M>
inline void micro_rows(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                       const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                       const float* a_top_value, const float* w_scale, const float* bias, float* c,
                       int ldc, int n, Activation act) {
  __m512i acc[M][kNv];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) acc[i][j] = _mm512_setzero_si512();
  // Moving pointers and per-row offsets, as in kernels_simd.h (int indices cost address
  // arithmetic per broadcast under -fwrapv).
  ptrdiff_t row_offset[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) row_offset[i] = static_cast<ptrdiff_t>(i) * lda;
  const int8_t* b_k = bp;
  for (const uint8_t *a_k = a, *a_end = a + kp; a_k != a_end; a_k += kGroup, b_k += kGroup * kNr) {
    __m512i b[kNv];
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) b[j] = _mm512_loadu_si512(b_k + 64 * j);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512i ai = _mm512_set1_epi32(load_u32(a_k + row_offset[i]));
#pragma GCC unroll 4
      for (int j = 0; j < kNv; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], ai, b[j]);
    }
  }
  // Through memory: an epilogue reading the accumulators directly makes GCC keep them in memory
  // in the K loop too.
  alignas(64) int32_t tile[M][kNr];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) _mm512_store_si512(tile[i] + 16 * j, acc[i][j]);
  for (int i = 0; i < M; ++i)
    finish_int8_row_avx512<kNv>(tile[i], colsum, a_scale[i], a_zero[i], a_top[i], a_top_value[i],
                                bp, kNr, w_scale, bias, c + i * ldc, n, act);
}

void gemm_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                const float* a_top_value, const float* w_scale, const float* bias, float* c,
                int ldc, int m, int n, Activation act) {
  with_rows<kMr>(m, [&](auto rows) {
    micro_rows<decltype(rows)::value>(kp, a, lda, bp, colsum, a_scale, a_zero, a_top, a_top_value,
                                      w_scale, bias, c, ldc, n, act);
  });
}

// vpdpbusd on ymm, EVEX-encoded (AVX512_VNNI + VL): lowp_avxvnni.cpp's VEX instruction.
struct EvexDpbusd {
  static __m256i dot(__m256i acc, __m256i a, __m256i b) { return _mm256_dpbusd_epi32(acc, a, b); }
};

}  // namespace

const Int8Kernels& avx512_vnni_int8_kernels() {
  static const Int8Kernels table{Isa::avx512, "avx512", kMr, kNr, kGroup, quantize_row,
                                 gemm_micro};
  return table;
}

const Int8Kernels& avx512_vnni_ymm_int8_kernels() {
  static const Int8Kernels table =
      int8_ymm_table<EvexDpbusd, 6, 2>(Isa::avx512, "avx512vnni_ymm");
  return table;
}

}  // namespace bertcpu
