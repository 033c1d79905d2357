// The int8 kernels for aarch64 with the int8 matrix multiply instructions (FEAT_I8MM): an 8 x 12
// micro-tile of USMMLA, which multiplies a 2 x 8 block of unsigned activations (two rows, 8 K
// values each) by an 8 x 2 block of signed weights into a 2 x 2 block of int32 sums. The packed
// panel (kgroup 8) holds each pair of columns as one 16-byte operand, and the quantized activations
// are pair-interleaved in chunks of 8 (Int8Kernels::a_pair_chunk), so each pair of rows is one
// 16-byte load too: no insert takes a vector-pipe slot from the USMMLAs. 24 accumulators hold 4 row
// pairs x 6 column pairs.
// Called only when the OS reports the extension (csrc/cpu/cpu_isa_arm.cpp).
#include "kernels/lowp_neon.h"

namespace bertcpu {

namespace {

constexpr int kMr = 8;
constexpr int kNv = 3;  // vectors of 4 columns in the epilogue
constexpr int kNr = 4 * kNv;
constexpr int kColumnPairs = kNr / 2;
constexpr int kGroup = 8;

template <int M>
inline void micro_rows(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                       const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                       const float* a_top_value, const float* w_scale, const float* bias, float* c,
                       int ldc, int n, Activation act) {
  constexpr int P = (M + 1) / 2;  // row pairs; an odd M's last pair holds the padding row M
  int32x4_t acc[kColumnPairs][P];
#pragma GCC unroll 8
  for (int j = 0; j < kColumnPairs; ++j)
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) acc[j][p] = vdupq_n_s32(0);
  ptrdiff_t pair_offset[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) pair_offset[p] = static_cast<ptrdiff_t>(2 * p) * lda;
  const int8_t* b_k = bp;
  // A pair's K group: 8 values of its first row, then 8 of its second.
  for (const uint8_t *a_k = a, *a_end = a + 2 * kp; a_k != a_end;
       a_k += 2 * kGroup, b_k += kGroup * kNr) {
    uint8x16_t rows[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) rows[p] = vld1q_u8(a_k + pair_offset[p]);
#pragma GCC unroll 8
    for (int j = 0; j < kColumnPairs; ++j) {
      const int8x16_t b = vld1q_s8(b_k + 16 * j);
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[j][p] = vusmmlaq_s32(acc[j][p], rows[p], b);
    }
  }
  // acc[j][p] = (row 2p: columns 2j, 2j+1; row 2p+1: columns 2j, 2j+1), into a row-major tile.
  alignas(16) int32_t tile[2 * P][kNr];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < kColumnPairs; ++j) {
      vst1_s32(tile[2 * p] + 2 * j, vget_low_s32(acc[j][p]));
      vst1_s32(tile[2 * p + 1] + 2 * j, vget_high_s32(acc[j][p]));
    }
  finish_int8_tile<M, kNv, 0, kGroup>(tile, colsum, a_scale, a_zero, a_top, a_top_value, bp,
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

const Int8Kernels& i8mm_int8_kernels() {
  static const Int8Kernels table{Isa::i8mm, "i8mm", kMr, kNr, kGroup,
                                 quantize_row_neon<0, kGroup>, gemm_micro, 0, kGroup};
  return table;
}

}  // namespace bertcpu
