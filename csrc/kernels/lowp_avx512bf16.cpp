// The bf16 kernels for AVX-512 with AVX512_BF16: vcvtneps2bf16 for the activations, and a 12 x 32
// micro-tile of vdpbf16ps (24 zmm accumulators; a pair of A broadcast from memory, two vectors of
// 16 column pairs of B per K pair). Called only when the CPU has AVX512_BF16 (gemm_lowp.cpp).
#include "kernels/lowp_kernels.h"
#include "kernels/vec_avx512.h"
#include "kernels/lowp_simd.h"

namespace bertcpu {

namespace {

constexpr int kMr = 12;
constexpr int kNv = 2;  // vectors of 16 columns
constexpr int kNr = 16 * kNv;

void convert_row(const float* x, int n, int np, bf16* out) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 mask = VecAvx512::tail_mask(n - i);
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i));
    _mm256_mask_storeu_epi16(out + i, mask, (__m256i)b);
  }
  for (i = n; i < np; ++i) out[i] = 0;
}

template <int M>
inline void micro_rows(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int n,
                       int flags, const float* bias, Activation act) {
  __m512 acc[M][kNv];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) acc[i][j] = _mm512_setzero_ps();
  // Moving pointers and per-row offsets, as in kernels_simd.h (int indices cost address
  // arithmetic per broadcast under -fwrapv).
  ptrdiff_t row_offset[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) row_offset[i] = static_cast<ptrdiff_t>(i) * lda;
  const bf16* b_k = bp;
  for (const bf16 *a_k = a, *a_end = a + kc; a_k != a_end; a_k += 2, b_k += 2 * kNr) {
    __m512bh b[kNv];
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) b[j] = (__m512bh)_mm512_loadu_si512(b_k + 32 * j);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(load_u32(a_k + row_offset[i]));
#pragma GCC unroll 4
      for (int j = 0; j < kNv; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], b[j], ai);
    }
  }
  // Through memory, as in lowp_avx512vnni.cpp: keeps the epilogue (one copy, not M) from pulling
  // the accumulators out of registers in the K loop.
  alignas(64) VecAvx512 tile[M][kNv];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) _mm512_store_ps(&tile[i][j].v, acc[i][j]);
  for (int i = 0; i < M; ++i)
    finish_row<VecAvx512, kNv>(tile[i], c + i * ldc, n, flags & kGemmAccumulate, bias, act);
}

void gemm_micro(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int m, int n,
                int flags, const float* bias, Activation act) {
  with_rows<kMr>(m, [&](auto rows) {
    micro_rows<decltype(rows)::value>(kc, a, lda, bp, c, ldc, n, flags, bias, act);
  });
}

}  // namespace

const Bf16Kernels& avx512_bf16_kernels() {
  static const Bf16Kernels table{Isa::avx512, "avx512", kMr, kNr, convert_row, gemm_micro};
  return table;
}

}  // namespace bertcpu
