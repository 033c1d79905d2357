// The bf16 kernels for aarch64 with FEAT_BF16: an 8 x 12 micro-tile of BFMMLA, which multiplies a
// 2 x 4 block of bf16 activations (two rows, 4 K values each) by a 4 x 2 block of bf16 weights into
// a 2 x 2 block of fp32 sums. The packed strips hold kc / 4 rows of column quads (kgroup 4), so
// each pair of columns is one 16-byte operand, and convert_row writes the activation rows
// pair-interleaved in chunks of 4 (Bf16Kernels::a_pair_chunk), so each pair of rows is one 16-byte
// load too: no insert takes a vector-pipe slot from the BFMMLAs. 24 accumulators hold 4 row pairs
// x 6 column pairs. BFMMLA sums its four products in its own rounding (the Arm ARM's BFMMLA;
// round-to-odd without FEAT_EBF16), so its results are not bit for bit the pair order of the other
// paths, only as accurate (tests/test_kernels_lowp.py). Offered on the i8mm path of CPUs whose OS
// reports FEAT_BF16 (every such CPU so far has I8MM).
#include "kernels/lowp_kernels.h"
#include "kernels/vec_neon.h"
#include "kernels/lowp_simd.h"

namespace bertcpu {

namespace {

constexpr int kMr = 8;
constexpr int kNv = 3;  // vectors of 4 columns in the epilogue
constexpr int kNr = 4 * kNv;
constexpr int kColumnPairs = kNr / 2;
constexpr int kGroup = 4;

// to_bf16() on 4 lanes, in integers: round to nearest even, NaN quiet, denormals to signed zero.
inline uint16x4_t to_bf16x4(float32x4_t x) {
  const uint32x4_t u = vreinterpretq_u32_f32(x);
  const uint32x4_t rounded =
      vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1))));
  const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
  const uint32x4_t tiny = vceqq_u32(vandq_u32(u, vdupq_n_u32(0x7f800000)), vdupq_n_u32(0));
  uint32x4_t out = vshrq_n_u32(rounded, 16);
  out = vbslq_u32(nan, vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40)), out);
  out = vbslq_u32(tiny, vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x8000)), out);
  return vmovn_u32(out);
}

// One chunk of 4 values per store, every 8 values (the other row of the pair fills the gaps). np
// is a multiple of 4, so the last values, zero-padded, make whole chunks.
void convert_row(const float* x, int n, int np, bf16* out) {
  static_assert(kGroup == 4, "a chunk is one vector of 4 lanes");
  auto chunk = [&](int i) { return out + activation_offset(kGroup, 0, 0, i); };
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(chunk(i), to_bf16x4(vld1q_f32(x + i)));
  if (i < n) {  // to_bf16x4(0.0f) is 0
    vst1_u16(chunk(i), to_bf16x4(VecNeon::load_partial(x + i, n - i, 0.0f).v));
    i += 4;
  }
  for (; i < np; i += 4) vst1_u16(chunk(i), vdup_n_u16(0));
}

template <int M>
inline void micro_rows(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int n,
                       int flags, const float* bias, Activation act) {
  constexpr int P = (M + 1) / 2;  // row pairs; an odd M's last pair holds the padding row M
  float32x4_t acc[kColumnPairs][P];
#pragma GCC unroll 8
  for (int j = 0; j < kColumnPairs; ++j)
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) acc[j][p] = vdupq_n_f32(0.0f);
  ptrdiff_t pair_offset[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) pair_offset[p] = static_cast<ptrdiff_t>(2 * p) * lda;
  const bf16* b_k = bp;
  // A pair's K group: 4 values of its first row, then 4 of its second.
  for (const bf16 *a_k = a, *a_end = a + 2 * kc; a_k != a_end;
       a_k += 2 * kGroup, b_k += kGroup * kNr) {
    bfloat16x8_t rows[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) rows[p] = vreinterpretq_bf16_u16(vld1q_u16(a_k + pair_offset[p]));
#pragma GCC unroll 8
    for (int j = 0; j < kColumnPairs; ++j) {
      const bfloat16x8_t b = vreinterpretq_bf16_u16(vld1q_u16(b_k + 8 * j));
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[j][p] = vbfmmlaq_f32(acc[j][p], rows[p], b);
    }
  }
  // acc[j][p] = (row 2p: columns 2j, 2j+1; row 2p+1: columns 2j, 2j+1), into a row-major tile.
  alignas(16) VecNeon tile[2 * P][kNv];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < kColumnPairs; ++j) {
      vst1_f32(reinterpret_cast<float*>(tile[2 * p]) + 2 * j, vget_low_f32(acc[j][p]));
      vst1_f32(reinterpret_cast<float*>(tile[2 * p + 1]) + 2 * j, vget_high_f32(acc[j][p]));
    }
  for (int i = 0; i < M; ++i)
    finish_row<VecNeon, kNv>(tile[i], c + i * ldc, n, flags & kGemmAccumulate, bias, act);
}

void gemm_micro(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int m, int n,
                int flags, const float* bias, Activation act) {
  with_rows<kMr>(m, [&](auto rows) {
    micro_rows<decltype(rows)::value>(kc, a, lda, bp, c, ldc, n, flags, bias, act);
  });
}

}  // namespace

const Bf16Kernels& neon_bf16_kernels() {
  static const Bf16Kernels table{Isa::i8mm, "i8mm", kMr, kNr, convert_row, gemm_micro, kGroup,
                                 kGroup};
  return table;
}

}  // namespace bertcpu
