// The int8 kernels for AVX2 (no VNNI): activations are stored widened to int16 and weights are
// widened on load (vpmovsxbw), then vpmaddwd multiplies int16 pairs into int32 sums -- exact,
// unlike vpmaddubsw, which saturates its int16 pair sums. A 6 x 16 micro-tile: 12 ymm
// accumulators, two vectors of 8 columns x 2 weights per K pair, a broadcast pair and a product:
// all 16 registers.
#include "kernels/lowp_kernels.h"
#include "kernels/vec_avx2.h"
#include "kernels/lowp_simd.h"

namespace bertcpu {

namespace {

constexpr int kMr = 6;
constexpr int kNv = 2;  // vectors of 8 columns
constexpr int kNr = 8 * kNv;
constexpr int kGroup = 2;

// rint(x * inv) for the lanes of x; vcvtps2dq rounds to nearest even, like the generic path.
inline __m256i quantize8(__m256 x, __m256 inv) { return _mm256_cvtps_epi32(_mm256_mul_ps(x, inv)); }

float quantize_row(const float* x, int k, int kp, uint8_t* out) {
  int16_t* q = reinterpret_cast<int16_t*>(out);
  VecAvx2 amax = VecAvx2::zero();
  int i = 0;
  for (; i + 8 <= k; i += 8) amax = VecAvx2::max(amax, VecAvx2::abs(VecAvx2::load(x + i)));
  if (i < k) amax = VecAvx2::max(amax, VecAvx2::abs(VecAvx2::load_partial(x + i, k - i, 0.0f)));
  const float max = amax.reduce_max();
  const float inv = max > 0.0f ? 127.0f / max : 0.0f;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 16 <= k; i += 16) {
    // packs_epi32 interleaves the 128-bit lanes of its operands; the permute restores the order.
    const __m256i packed = _mm256_packs_epi32(quantize8(_mm256_loadu_ps(x + i), vinv),
                                              quantize8(_mm256_loadu_ps(x + i + 8), vinv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permute4x64_epi64(packed, 0xd8));
  }
  for (; i < k; ++i) q[i] = static_cast<int16_t>(_mm_cvtss_si32(_mm_set_ss(x[i] * inv)));
  for (i = k; i < kp; ++i) q[i] = 0;
  return max / 127.0f;
}

template <int M>
inline void micro_rows(int kp, const uint8_t* a, int lda, const int8_t* bp, const float* a_scale,
                       const float* w_scale, const float* bias, float* c, int ldc, int n,
                       Activation act) {
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
  for (int i = 0; i < M; ++i) {
    const __m256 sa = _mm256_set1_ps(a_scale[i]);
    VecAvx2 r[kNv];
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) {
      const __m256 v = _mm256_cvtepi32_ps(
          _mm256_load_si256(reinterpret_cast<const __m256i*>(tile[i] + 8 * j)));
      r[j].v = rounded(_mm256_mul_ps(_mm256_mul_ps(v, sa), _mm256_loadu_ps(w_scale + 8 * j)));
    }
    finish_row<VecAvx2, kNv>(r, c + i * ldc, n, false, bias, act);
  }
}

// Activations are signed int16 here, so `comp` is not needed.
void gemm_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* comp,
                const float* a_scale, const float* w_scale, const float* bias, float* c, int ldc,
                int m, int n, Activation act) {
  with_rows<kMr>(m, [&](auto rows) {
    micro_rows<decltype(rows)::value>(kp, a, lda, bp, a_scale, w_scale, bias, c, ldc, n, act);
  });
}

}  // namespace

const Int8Kernels& avx2_int8_kernels() {
  static const Int8Kernels table{Isa::avx2, kMr, kNr, kGroup, 2, quantize_row, gemm_micro};
  return table;
}

}  // namespace bertcpu
