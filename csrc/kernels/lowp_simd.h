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

// The parameters of one row's asymmetric quantization to 0..q_max (Int8Kernels::quantize_row,
// q_max its a_max) from lo = min(min x, 0) and hi = max(max x, 0), computed as quantize_uint8()
// (lowp_generic.cpp) does for q_max 255. A zero row gets inv = 0, which makes every q = 0.
struct RowQuant {
  float inv, scale;
  int zero_point;
};

inline RowQuant row_quant(float lo, float hi, int q_max) {
  if (hi == lo) return {0.0f, 0.0f, 0};
  const float range = hi - lo;
  const float levels = static_cast<float>(q_max);
  const float inv = levels / range;
  const int zp = round_to_int(-lo * inv);
  return {inv, range / levels, zp < 0 ? 0 : zp > q_max ? q_max : zp};
}

// A row's quantization without its largest |x| (Int8Kernels::quantize_row): the parameters of the
// rest, the index of that value (the first, in a tie; 0 for a zero row) and the value.
struct RowQuantTop {
  RowQuant rq;
  int top;
  float value;
};

// min(min x[0:n], 0) (Largest false) or max(max x[0:n], 0) (Largest true).
template <class V, bool Largest>
inline float extreme_with_zero(const float* x, int n) {
  constexpr int W = V::width;
  V m = V::zero();
  int i = 0;
  for (; i + W <= n; i += W) m = Largest ? V::max(m, V::load(x + i)) : V::min(m, V::load(x + i));
  if (i < n) {
    const V v = V::load_partial(x + i, n - i, 0.0f);
    m = Largest ? V::max(m, v) : V::min(m, v);
  }
  return Largest ? m.reduce_max() : m.reduce_min();
}

// RowQuantTop of x[0:k] for codes 0..q_max: one pass for the row's range (widened with 0, as
// row_quant() wants), a scan for the first value of the largest magnitude (four vectors per
// reduction), and the range of the rest: the row's on one side, on the top's side the extreme of
// the values before and after it.
template <class V>
inline RowQuantTop row_quant_without_top(const float* x, int k, int q_max = 255) {
  constexpr int W = V::width;
  V lo = V::zero(), hi = V::zero();
  int i = 0;
  for (; i + W <= k; i += W) {
    const V v = V::load(x + i);
    lo = V::min(lo, v);
    hi = V::max(hi, v);
  }
  if (i < k) {
    const V v = V::load_partial(x + i, k - i, 0.0f);
    lo = V::min(lo, v);
    hi = V::max(hi, v);
  }
  const float row_lo = lo.reduce_min(), row_hi = hi.reduce_max();
  const float magnitude = row_hi > -row_lo ? row_hi : -row_lo;
  if (magnitude == 0.0f) return {row_quant(0.0f, 0.0f, q_max), 0, 0.0f};  // also k = 0
  int top = 0;
  while (top + 4 * W <= k &&
         V::max(V::max(V::abs(V::load(x + top)), V::abs(V::load(x + top + W))),
                V::max(V::abs(V::load(x + top + 2 * W)), V::abs(V::load(x + top + 3 * W))))
                 .reduce_max() != magnitude)
    top += 4 * W;
  while (top < k - 1 && __builtin_fabsf(x[top]) != magnitude) ++top;  // bounded for NaN input
  const float value = x[top];
  const float* after = x + top + 1;
  const int after_count = k - top - 1;
  if (value > 0.0f) {
    const float before_hi = extreme_with_zero<V, true>(x, top);
    const float after_hi = extreme_with_zero<V, true>(after, after_count);
    return {row_quant(row_lo, before_hi > after_hi ? before_hi : after_hi, q_max), top, value};
  }
  const float before_lo = extreme_with_zero<V, false>(x, top);
  const float after_lo = extreme_with_zero<V, false>(after, after_count);
  return {row_quant(before_lo < after_lo ? before_lo : after_lo, row_hi, q_max), top, value};
}

// clamp(rint(x) + zp, 0, q_max) of one scalar, as in quantize_uint8().
inline int quantize_scalar(float x_inv, int zp, int q_max = 255) {
  const int q = round_to_int(x_inv) + zp;
  return q < 0 ? 0 : q > q_max ? q_max : q;
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
