// The int8 kernels for aarch64 with the dot product instructions (FEAT_DotProd): a 7 x 12
// micro-tile of SDOT (21 q accumulators; per 16 K values, seven 16-byte loads of A, one per row, and
// twelve of B, 4 columns x 4 weights each, feed 84 SDOT by element). SDOT
// multiplies signed bytes only, so the activations are stored as q - 128 and the epilogue
// subtracts (zp - 128) * colsum instead of zp * colsum: the same exact integer. Called only when
// the OS reports the extension (csrc/cpu/cpu_isa_arm.cpp).
#include "kernels/lowp_neon.h"

namespace bertcpu {

namespace {

constexpr int kMr = 7;
constexpr int kNv = 3;  // vectors of 4 columns
constexpr int kNr = 4 * kNv;
constexpr int kGroup = 4;
constexpr int kOffset = 128;

template <int M>
inline void micro_rows(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                       const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                       const float* a_top_value, const float* w_scale, const float* bias, float* c,
                       int ldc, int n, Activation act) {
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
  const uint8_t* a_k = a;
  const uint8_t* const a_end = a + kp;
  // One K group: 3 vectors of B times lane `kLane` of each row's A vector.
  auto group = [&](const int8x16_t* a_rows, auto lane) {
    constexpr int kLane = decltype(lane)::value;
    int8x16_t b[kNv];
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) b[j] = vld1q_s8(b_k + 16 * j);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < kNv; ++j) acc[j][i] = vdotq_laneq_s32(acc[j][i], b[j], a_rows[i], kLane);
    b_k += kGroup * kNr;
  };
  // Four groups at a time: one 16-byte load per row feeds SDOT by element (lanes 0-3), so no
  // broadcast costs a vector-pipe slot (GCC turns ld1r into ldr + dup).
  for (; a_end - a_k >= 4 * kGroup; a_k += 4 * kGroup) {
    int8x16_t a_rows[M];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) a_rows[i] = vreinterpretq_s8_u8(vld1q_u8(a_k + row_offset[i]));
    group(a_rows, RowCount<0>{});
    group(a_rows, RowCount<1>{});
    group(a_rows, RowCount<2>{});
    group(a_rows, RowCount<3>{});
  }
  for (; a_k != a_end; a_k += kGroup) {  // the last K groups (K % 16)
    int8x16_t a_rows[M];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i)
      a_rows[i] = vreinterpretq_s8_u32(
          vld1q_dup_u32(reinterpret_cast<const uint32_t*>(a_k + row_offset[i])));
    group(a_rows, RowCount<0>{});
  }
  // Through memory, as in lowp_avx512vnni.cpp: keeps the accumulators in registers in the K loop.
  alignas(16) int32_t tile[M][kNr];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNv; ++j) vst1q_s32(tile[i] + 4 * j, acc[j][i]);
  finish_int8_tile<M, kNv, kOffset, kGroup>(tile, colsum, a_scale, a_zero, a_top, a_top_value, bp,
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

const Int8Kernels& dotprod_int8_kernels() {
  static const Int8Kernels table{Isa::dotprod, "dotprod",  kMr, kNr, kGroup,
                                 quantize_row_neon<kOffset, 0>, gemm_micro, kOffset};
  return table;
}

}  // namespace bertcpu
