// The int8 kernels for AVX2 (no VNNI): activations (0..255) are stored widened to int16 and weights
// are widened on load (vpmovsxbw), then vpmaddwd multiplies int16 pairs into int32 sums -- exact,
// unlike vpmaddubsw, which saturates its int16 pair sums. A 6 x 16 micro-tile: 12 ymm
// accumulators, two vectors of 8 columns x 2 weights per K pair, a broadcast pair and a product:
// all 16 registers.
//
// Measured against vpmaddubsw kernels on this project's Zen 4 (AVX2 code, one thread, M = 128,
// bench_gemm.py; this kernel 142-162 GOP/s): u8 activations x s8 weights would clip (a pair can
// reach 2 * 255 * 127 = 64770 > 32767). Exact variants: 7-bit weights (|w| <= 63) ran ~200 GOP/s
// but cost all-MiniLM-L6-v2's int8 sentence cosine 0.99944 -> 0.99825 against fp32 (bar 0.999);
// signed activations (q - 127, 255 levels) with vpsignb onto |w| keep 8-bit weights and accuracy
// but ran 117-135 GOP/s: vpsignb + vpmaddubsw + vpmaddwd(ones) issue as many multiply-port uops
// per product as vpmaddwd does here, plus the sign. So this kernel stays; int8 on ymm gains
// with AVX-VNNI (lowp_avxvnni.cpp), where one vpdpbusd does the four products exactly.
#include "kernels/lowp_kernels.h"
#include "kernels/vec_avx2.h"
#include "kernels/lowp_simd.h"
#include "kernels/lowp_int8_finish_ymm.h"

namespace bertcpu {

namespace {

constexpr int kMr = 6;
constexpr int kNv = 2;  // vectors of 8 columns
constexpr int kNr = 8 * kNv;
constexpr int kGroup = 2;

// rint(x * inv) + zp for the lanes of x; vcvtps2dq rounds to nearest even, like the generic path.
inline __m256i quantize8(__m256 x, __m256 inv, __m256i zp) {
  return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(x, inv)), zp);
}

float quantize_row(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                   int32_t* top, float* top_value) {
  int16_t* q = reinterpret_cast<int16_t*>(out);
  const RowQuantTop row = row_quant_without_top<VecAvx2>(x, k);
  const RowQuant& rq = row.rq;
  const __m256 inv = _mm256_set1_ps(rq.inv);
  const __m256i zp = _mm256_set1_epi32(rq.zero_point);
  const __m256i q_max = _mm256_set1_epi16(255);
  int i = 0;
  for (; i + 16 <= k; i += 16) {
    // packus_epi32 clamps at 0 (the values stay far below its upper limit) and interleaves the
    // 128-bit lanes of its operands; the permute restores the order.
    const __m256i packed = _mm256_packus_epi32(quantize8(_mm256_loadu_ps(x + i), inv, zp),
                                               quantize8(_mm256_loadu_ps(x + i + 8), inv, zp));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_min_epi16(_mm256_permute4x64_epi64(packed, 0xd8), q_max));
  }
  for (; i < k; ++i) q[i] = static_cast<int16_t>(quantize_scalar(x[i] * rq.inv, rq.zero_point));
  for (i = k; i < kp; ++i) q[i] = static_cast<int16_t>(rq.zero_point);
  if (k > 0) q[row.top] = static_cast<int16_t>(rq.zero_point);
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
  __m256i acc[M][kNv];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) acc[i][j] = _mm256_setzero_si256();
  for (int k = 0; k < kp; k += kGroup) {
    __m256i b[kNv];
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j)
      b[j] = _mm256_cvtepi8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(bp + k * kNr + 16 * j)));
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m256i ai = _mm256_set1_epi32(load_u32(a + i * lda + 2 * k));
#pragma GCC unroll 4
      for (int j = 0; j < kNv; ++j)
        acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(ai, b[j]));
    }
  }
  // Through memory, as in lowp_avx512vnni.cpp: keeps the accumulators in registers in the K loop.
  alignas(32) int32_t tile[M][kNr];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j)
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile[i] + 8 * j), acc[i][j]);
  finish_int8_tile_ymm<M, kNv, kGroup>(tile, colsum, a_scale, a_zero, a_top, a_top_value, bp,
                                       w_scale, bias, c, ldc, n, act);
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

}  // namespace

const Int8Kernels& avx2_int8_kernels() {
  static const Int8Kernels table{Isa::avx2, "avx2", kMr, kNr, kGroup, 2, quantize_row,
                                 gemm_micro};
  return table;
}

}  // namespace bertcpu
