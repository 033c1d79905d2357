// The int8 kernels for aarch64 with the dot product instructions (FEAT_DotProd): an 8 x 12
// micro-tile of SDOT (24 q accumulators; per group of 4 K values, three loads of 4 columns x 4
// weights and eight ld1r of a row's 4 activations feed 24 SDOT, the fp32 kernel's shape). SDOT
// multiplies signed bytes only, so the activations are stored as q - 128 and the epilogue
// subtracts (zp - 128) * colsum instead of zp * colsum: the same exact integer. Called only when
// the OS reports the extension (csrc/cpu/cpu_isa_arm.cpp).
#include "kernels/lowp_neon.h"

namespace bertcpu {

namespace {

constexpr int kMr = 8;
constexpr int kNv = 3;  // vectors of 4 columns
constexpr int kNr = 4 * kNv;
constexpr int kGroup = 4;
constexpr int kOffset = 128;

template <int M>
inline void micro_rows(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                       const float* a_scale, const int32_t* a_zero, const float* w_scale,
                       const float* bias, float* c, int ldc, int n, Activation act) {
  int32x4_t acc[kNv][M];
#pragma GCC unroll 4
  for (int j = 0; j < kNv; ++j)
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) acc[j][i] = vdupq_n_s32(0);
  // Moving pointers and per-row offsets, as in kernels_simd.h.
  ptrdiff_t row_offset[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) row_offset[i] = static_cast<ptrdiff_t>(i) * lda;
  const int8_t* b_k = bp;
  for (const uint8_t *a_k = a, *a_end = a + kp; a_k != a_end; a_k += kGroup, b_k += kGroup * kNr) {
    int8x16_t b[kNv];
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) b[j] = vld1q_s8(b_k + 16 * j);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      // Rows are kp bytes (a multiple of 4) from an aligned buffer: 4-byte aligned.
      const int8x16_t ai = vreinterpretq_s8_u32(
          vld1q_dup_u32(reinterpret_cast<const uint32_t*>(a_k + row_offset[i])));
#pragma GCC unroll 4
      for (int j = 0; j < kNv; ++j) acc[j][i] = vdotq_s32(acc[j][i], b[j], ai);
    }
  }
  // Through memory, as in lowp_avx512vnni.cpp: keeps the accumulators in registers in the K loop.
  alignas(16) int32_t tile[M][kNr];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) vst1q_s32(tile[i] + 4 * j, acc[j][i]);
  finish_int8_tile<M, kNv, kOffset>(tile, colsum, a_scale, a_zero, w_scale, bias, c, ldc, n, act);
}

void gemm_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                const float* a_scale, const int32_t* a_zero, const float* w_scale,
                const float* bias, float* c, int ldc, int m, int n, Activation act) {
  with_rows<kMr>(m, [&](auto rows) {
    micro_rows<decltype(rows)::value>(kp, a, lda, bp, colsum, a_scale, a_zero, w_scale, bias, c,
                                      ldc, n, act);
  });
}

}  // namespace

const Int8Kernels& dotprod_int8_kernels() {
  static const Int8Kernels table{Isa::dotprod, kMr,        kNr,     kGroup, 1,
                                 quantize_row_neon<kOffset>, gemm_micro, kOffset};
  return table;
}

}  // namespace bertcpu
