// Pieces of aarch64's int8 kernels (lowp_dotprod.cpp, lowp_i8mm.cpp): the row quantizer and the
// epilogue, over vec_neon.h. Internal linkage, like lowp_simd.h.
#pragma once

#include "kernels/lowp_kernels.h"
#include "kernels/vec_neon.h"
#include "kernels/lowp_simd.h"

namespace bertcpu {
namespace {

// Int8Kernels::quantize_row storing q - kOffset (kOffset 0: uint8 q; 128: int8 q - 128, which is
// q with its top bit flipped) in the layout of a_pair_chunk kPairChunk (0 or 8). vcvtnq rounds to
// nearest even like the generic path; the two saturating narrowings clamp to 0 (int32 -> uint16)
// and to 255 (uint16 -> uint8).
template <int kOffset, int kPairChunk>
float quantize_row_neon(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                        int32_t* top, float* top_value) {
  static_assert(kPairChunk == 0 || kPairChunk == 8, "16 values are one or two whole chunks");
  auto at = [](int j) { return activation_offset(kPairChunk, 0, 0, j); };
  const RowQuantTop row = row_quant_without_top<VecNeon>(x, k);
  const RowQuant& rq = row.rq;
  const float32x4_t inv = vdupq_n_f32(rq.inv);
  const int32x4_t zp = vdupq_n_s32(rq.zero_point);
  const uint8x16_t flip = vdupq_n_u8(static_cast<uint8_t>(kOffset));
  int i = 0;
  for (; i + 16 <= k; i += 16) {
    int32x4_t q[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
      q[j] = vaddq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + i + 4 * j), inv)), zp);
    const uint16x8_t lo = vcombine_u16(vqmovun_s32(q[0]), vqmovun_s32(q[1]));
    const uint16x8_t hi = vcombine_u16(vqmovun_s32(q[2]), vqmovun_s32(q[3]));
    const uint8x16_t q16 = veorq_u8(vcombine_u8(vqmovn_u16(lo), vqmovn_u16(hi)), flip);
    if (kPairChunk == 0) {
      vst1q_u8(out + i, q16);
    } else {
      vst1_u8(out + at(i), vget_low_u8(q16));
      vst1_u8(out + at(i + 8), vget_high_u8(q16));
    }
  }
  for (; i < k; ++i)
    out[at(i)] = static_cast<uint8_t>(quantize_scalar(x[i] * rq.inv, rq.zero_point) ^ kOffset);
  for (i = k; i < kp; ++i) out[at(i)] = static_cast<uint8_t>(rq.zero_point ^ kOffset);
  if (k > 0) out[at(row.top)] = static_cast<uint8_t>(rq.zero_point ^ kOffset);
  *zero_point = rq.zero_point;
  *top = row.top;
  *top_value = row.value;
  return rq.scale;
}

// The epilogue of an M x (NV * 4) tile of exact int32 sums of (q - kOffset) * w:
// act((float(acc - (zp - kOffset) * colsum) * a_scale + a_top_value * float(qw[a_top])) * w_scale
// + bias), the order of the generic kernel (acc - zp * colsum is the same integer). bp: the panel
// (NV * 4 columns in groups of KG K values).
template <int M, int NV, int kOffset, int KG>
__attribute__((always_inline)) inline void finish_int8_tile(
    const int32_t (*tile)[NV * 4], const int32_t* colsum, const float* a_scale,
    const int32_t* a_zero, const int32_t* a_top, const float* a_top_value, const int8_t* bp,
    const float* w_scale, const float* bias, float* c, int ldc, int n, Activation act) {
  constexpr int kNr = NV * 4;
  for (int i = 0; i < M; ++i) {
    const float32x4_t sa = vdupq_n_f32(a_scale[i]);
    const int32x4_t zp = vdupq_n_s32(a_zero[i] - kOffset);
    VecNeon r[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const int32x4_t centered =
          vsubq_s32(vld1q_s32(tile[i] + 4 * j), vmulq_s32(zp, vld1q_s32(colsum + 4 * j)));
      r[j].v = rounded(vmulq_f32(vcvtq_f32_s32(centered), sa));
    }
    if (a_top_value[i] != 0.0f) {
      // The top input's weights, one byte in each column's K group, gathered (a few per tile row).
      const int8_t* top = bp + packed_int8_offset(kNr, KG, a_top[i]);
      alignas(16) float weights[kNr];
#pragma GCC unroll 16
      for (int j = 0; j < kNr; ++j) weights[j] = static_cast<float>(top[j * KG]);
      const float32x4_t tv = vdupq_n_f32(a_top_value[i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        r[j].v = vaddq_f32(r[j].v, rounded(vmulq_f32(tv, vld1q_f32(weights + 4 * j))));
    }
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) r[j].v = rounded(vmulq_f32(r[j].v, vld1q_f32(w_scale + 4 * j)));
    finish_row<VecNeon, NV>(r, c + i * ldc, n, false, bias, act);
  }
}

}  // namespace
}  // namespace bertcpu
