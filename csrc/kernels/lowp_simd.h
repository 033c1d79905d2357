// Pieces shared by the SIMD low-precision kernels (lowp_avx2.cpp, lowp_avx512bf16.cpp,
// lowp_avx512vnni.cpp, and aarch64's lowp_dotprod.cpp, lowp_i8mm.cpp, lowp_bf16.cpp), written over
// kernels_simd.h's vector types. Internal linkage and no library
// header, like kernels_simd.h.
#pragma once

#include "kernels/kernels_simd.h"

namespace bertcpu {
namespace {

// 4 bytes from any address (an A element pair or group, broadcast to every lane).
inline int load_u32(const void* p) {
  int v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// v, forced out of the register allocator's view: a product passed through it is rounded before any
// addition that follows (no FMA contraction), as in the scalar reference.
template <class T>
inline T rounded(T v) {
#if defined(__aarch64__)
  __asm__("" : "+w"(v));  // an FP/SIMD register
#else
  __asm__("" : "+v"(v));
#endif
  return v;
}

// rint(x) as an int: to nearest, ties to even (the generic path's nearbyint).
inline int round_to_int(float x) {
#if defined(__aarch64__)
  return vcvtns_s32_f32(x);
#else
  return _mm_cvtss_si32(_mm_set_ss(x));
#endif
}

// The parameters of one row's asymmetric quantization (Int8Kernels::quantize_row) from
// lo = min(min x, 0) and hi = max(max x, 0), computed as quantize_uint8() (lowp_generic.cpp) does.
// A zero row gets inv = 0, which makes every q = rint(x * 0) + 0 = 0.
struct RowQuant {
  float inv, scale;
  int zero_point;
};

inline RowQuant row_quant(float lo, float hi) {
  if (hi == lo) return {0.0f, 0.0f, 0};
  const float range = hi - lo;
  const float inv = 255.0f / range;
  const int zp = round_to_int(-lo * inv);
  return {inv, range / 255.0f, zp < 0 ? 0 : zp > 255 ? 255 : zp};
}

// A row's quantization without its largest |x| (Int8Kernels::quantize_row): the parameters of the
// rest, the index of that value (the first, in a tie; 0 for a zero row) and the value.
struct RowQuantTop {
  RowQuant rq;
  int top;
  float value;
};

// Adds v to a running pair of the two largest values seen (a multiset: a repeated maximum is also
// the second).
inline void keep_two_largest(float v, float& first, float& second) {
  if (v > first) {
    second = first;
    first = v;
  } else if (v > second) {
    second = v;
  }
}

// RowQuantTop of x[0:k]: one pass keeping the two smallest and the two largest values per lane
// (all widened with 0, as row_quant() wants), the lanes merged, a scan for the first value of the
// largest magnitude (whole vectors first), and the rest's range: the row's minus that value's side.
template <class V>
inline RowQuantTop row_quant_without_top(const float* x, int k) {
  constexpr int W = V::width;
  V lo1 = V::zero(), lo2 = V::zero(), hi1 = V::zero(), hi2 = V::zero();
  auto add = [&](V v) {
    hi2 = V::max(hi2, V::min(hi1, v));
    hi1 = V::max(hi1, v);
    lo2 = V::min(lo2, V::max(lo1, v));
    lo1 = V::min(lo1, v);
  };
  int i = 0;
  for (; i + W <= k; i += W) add(V::load(x + i));
  if (i < k) add(V::load_partial(x + i, k - i, 0.0f));
  float lanes[4][W];
  hi1.store(lanes[0]);
  hi2.store(lanes[1]);
  lo1.store(lanes[2]);
  lo2.store(lanes[3]);
  float hi_first = 0.0f, hi_second = 0.0f, lo_first = 0.0f, lo_second = 0.0f;  // lo: negated
  for (int j = 0; j < W; ++j) {
    keep_two_largest(lanes[0][j], hi_first, hi_second);
    keep_two_largest(lanes[1][j], hi_first, hi_second);
    keep_two_largest(-lanes[2][j], lo_first, lo_second);
    keep_two_largest(-lanes[3][j], lo_first, lo_second);
  }
  const float magnitude = hi_first > lo_first ? hi_first : lo_first;
  int top = 0;
  if (magnitude > 0.0f) {
    // Four vectors per reduction, then the first value in the block (or in the tail) that has it.
    while (top + 4 * W <= k &&
           V::max(V::max(V::abs(V::load(x + top)), V::abs(V::load(x + top + W))),
                  V::max(V::abs(V::load(x + top + 2 * W)), V::abs(V::load(x + top + 3 * W))))
                   .reduce_max() != magnitude)
      top += 4 * W;
    while (__builtin_fabsf(x[top]) != magnitude) ++top;
  }
  const float value = k > 0 ? x[top] : 0.0f;
  const RowQuant rq = value > 0.0f   ? row_quant(-lo_first, hi_second)
                      : value < 0.0f ? row_quant(-lo_second, hi_first)
                                     : row_quant(0.0f, 0.0f);
  return {rq, top, value};
}

// clamp(rint(x) + zp, 0, 255) of one scalar, as in quantize_uint8().
inline int quantize_scalar(float x_inv, int zp) {
  const int q = round_to_int(x_inv) + zp;
  return q < 0 ? 0 : q > 255 ? 255 : q;
}

template <int R>
struct RowCount {
  static constexpr int value = R;
};

// Calls f(RowCount<m>{}) for 1 <= m <= MR: a micro-kernel compiled once per row count keeps its
// accumulators in registers.
template <int MR, int R = 1, class F>
inline void with_rows(int m, F&& f) {
  if constexpr (R <= MR) {
    if (m == R)
      f(RowCount<R>{});
    else
      with_rows<MR, R + 1>(m, f);
  }
}

// Epilogue of one row of a micro-tile held in NV vectors: row[0, n) = act(r (+ row) + bias), the
// order of the fp32 micro-kernel. bias may be null (nothing added).
template <class V, int NV>
__attribute__((always_inline)) inline void finish_row(const V* r, float* row, int n,
                                                     bool accumulate, const float* bias,
                                                     Activation act) {
  constexpr int W = V::width;
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const int cols = n - j * W;
    if (cols <= 0) break;
    V v = r[j];
    float* out = row + j * W;
    if (cols >= W) {
      if (accumulate) v = v + V::load(out);
      if (bias) v = v + V::load(bias + j * W);
      vactivation(v, act).store(out);
    } else {
      if (accumulate) v = v + V::load_partial(out, cols, 0.0f);
      if (bias) v = v + V::load_partial(bias + j * W, cols, 0.0f);
      vactivation(v, act).store_partial(out, cols);
    }
  }
}

}  // namespace
}  // namespace bertcpu
