// The SIMD kernels, written once over a vector type V (vec_avx2.h, vec_avx512.h) and compiled once
// per ISA by kernels_avx2.cpp / kernels_avx512.cpp. Everything here has internal linkage, and no
// library header is included, so no ISA-specific code can leak into other translation units.
#pragma once

#include "kernels/kernels.h"

namespace bertcpu {
namespace {

// ---- elementwise math ---------------------------------------------------------------------

// exp(x): range reduction to r in [-ln2/2, ln2/2], a degree-6 polynomial, scaling by 2^n.
// About 1 ulp over the range that does not underflow; inputs below -87.3 give ~1e-38.
template <class V>
inline V vexp(V x) {
  x = V::min(V::max(x, V::set1(-87.3f)), V::set1(88.7f));
  const V n = V::round(x * V::set1(1.44269504088896341f));
  V r = V::fnmadd(n, V::set1(0.693359375f), x);
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  V p = V::set1(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
  p = V::fmadd(p * r, r, r + V::set1(1.0f));
  return p * V::pow2(n);
}

// exp((x - max) * scale) for a softmax, as 2^t with t = (x - max) * scale_log2e <= 0: n = rint(t),
// 2^(t - n) by a degree-6 polynomial on [-1/2, 1/2] (a minimax fit; 0.7 ulp evaluated with FMA),
// times 2^n. Half the instructions of vexp: t - n is exact, so no two-part range reduction, and t
// needs no upper clamp. t is clamped at -126 (2^t ~ 1e-38 beside the row's largest term, 1).
template <class V>
inline V softmax_exp(V x, V max, V scale_log2e) {
  const V t = V::max((x - max) * scale_log2e, V::set1(-126.0f));
  const V n = V::round(t);
  const V f = t - n;
  V p = V::set1(1.534581242594868e-4f);
  p = V::fmadd(p, f, V::set1(1.3399930903688073e-3f));
  p = V::fmadd(p, f, V::set1(9.618489071726799e-3f));
  p = V::fmadd(p, f, V::set1(5.550328642129898e-2f));
  p = V::fmadd(p, f, V::set1(2.4022646248340607e-1f));
  p = V::fmadd(p, f, V::set1(6.931471824645996e-1f));
  p = V::fmadd(p, f, V::set1(1.0f));
  return V::ldexp(p, n);
}

// erf(x), Abramowitz & Stegun 7.1.26: absolute error below 2e-7, enough for GELU, whose error is
// then below 1e-6 of |x|.
template <class V>
inline V verf(V x) {
  const V ax = V::abs(x);
  const V t = V::set1(1.0f) / V::fmadd(V::set1(0.3275911f), ax, V::set1(1.0f));
  V p = V::set1(1.061405429f);
  p = V::fmadd(p, t, V::set1(-1.453152027f));
  p = V::fmadd(p, t, V::set1(1.421413741f));
  p = V::fmadd(p, t, V::set1(-0.284496736f));
  p = V::fmadd(p, t, V::set1(0.254829592f));
  p = p * t;
  const V y = V::fnmadd(p, vexp(V::zero() - ax * ax), V::set1(1.0f));
  return V::copysign(y, x);
}

// erf(x) by kernels.h's rational function: half the instructions of verf, and no exp.
template <class V>
inline V verf_rational(V x) {
  const V z = V::min(V::max(x, V::set1(-kErfRationalBound)), V::set1(kErfRationalBound));
  const V t = z * z;
  V p = V::set1(kErfRationalP[0]), q = V::set1(kErfRationalQ[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 6; ++i) {
    p = V::fmadd(p, t, V::set1(kErfRationalP[i]));
    q = V::fmadd(q, t, V::set1(kErfRationalQ[i]));
  }
  return V::min(V::max(z * p / q, V::set1(-1.0f)), V::set1(1.0f));
}

// tanh(x) = sign(x) * (1 - 2 / (exp(2|x|) + 1)); absolute error about 1e-7.
template <class V>
inline V vtanh(V x) {
  const V e = vexp(V::min(V::abs(x) * V::set1(2.0f), V::set1(88.0f)));
  const V y = V::set1(1.0f) - V::set1(2.0f) / (e + V::set1(1.0f));
  return V::copysign(y, x);
}

template <class V>
inline V vactivation(V x, Activation act) {
  switch (act) {
    case Activation::none:
      return x;
    case Activation::gelu_erf:
      return V::set1(0.5f) * x * (V::set1(1.0f) + verf(x * V::set1(0.70710678118654752f)));
    case Activation::gelu_erf_rational:
      return V::set1(0.5f) * x *
             (V::set1(1.0f) + verf_rational(x * V::set1(0.70710678118654752f)));
    case Activation::gelu_tanh: {
      const V x3 = x * x * x;
      const V inner = V::set1(0.79788456080286536f) * V::fmadd(V::set1(0.044715f), x3, x);
      return V::set1(0.5f) * x * (V::set1(1.0f) + vtanh(inner));
    }
    case Activation::relu:
      return V::max(x, V::zero());
    case Activation::tanh:
      return vtanh(x);
  }
  return x;
}

// ---- GEMM micro-kernel ----------------------------------------------------------------------

// C[M x n] (=|+=) A[M x kc] * Bp[kc x NV*W] with M rows held in NV*M vector accumulators; each
// step broadcasts one A value per row (vbroadcastss / ld1r from memory) against NV vectors of B.
template <class V, int M, int NV>
inline void gemm_micro_rows(int kc, const float* a, int lda, const float* bp, float* c, int ldc,
                            int n, int flags, const float* bias, Activation act,
                            const float* next) {
  constexpr int W = V::width, NR = NV * W;
  V acc[NV][M];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j)
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) acc[j][i] = V::zero();
  // A is read through one moving pointer plus fixed per-row offsets held in registers, B and the
  // prefetched strip through moving pointers. Written as a[i * lda + k] with int indices, the loop
  // paid address arithmetic on every broadcast under CPython's -fwrapv, which forbids widening
  // the index once (measured: the GEMM ran 5-7% slower).
  ptrdiff_t row_offset[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) row_offset[i] = static_cast<ptrdiff_t>(i) * lda;
  const float* a_k = a;
  const float* const a_end = a + kc;
  const float* b_k = bp;
  const char* next_k = reinterpret_cast<const char*>(next);
  for (; a_k != a_end; ++a_k, b_k += NR) {
    if (next) {
      __builtin_prefetch(next_k, 0, 2);
      if constexpr (NR * sizeof(float) > 64) __builtin_prefetch(next_k + 64, 0, 2);
      next_k += NR * sizeof(float);
    }
    V b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) b[j] = V::load(b_k + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const V ai = V::set1(a_k[row_offset[i]]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[j][i] = V::fmadd(ai, b[j], acc[j][i]);
    }
  }
  const bool accumulate = flags & kGemmAccumulate;
  V bias_v[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) bias_v[j] = bias ? V::load(bias + j * W) : V::zero();
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    float* row = c + i * ldc;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const int cols = n - j * W;  // of this vector's W columns, the ones in C
      if (cols <= 0) break;
      V r = acc[j][i];
      if (cols >= W) {
        if (accumulate) r = r + V::load(row + j * W);
        vactivation(r + bias_v[j], act).store(row + j * W);
      } else {
        if (accumulate) r = r + V::load_partial(row + j * W, cols, 0.0f);
        vactivation(r + bias_v[j], act).store_partial(row + j * W, cols);
      }
    }
  }
}

template <class V, int MR, int NV>
void gemm_micro(int kc, const float* a, int lda, const float* bp, float* c, int ldc, int m, int n,
                int flags, const float* bias, Activation act, const float* next) {
  switch (m) {
#define BERTCPU_ROWS_CASE(R)                                                                  \
  case R:                                                                                     \
    if constexpr (R <= MR)                                                                    \
      gemm_micro_rows<V, R, NV>(kc, a, lda, bp, c, ldc, n, flags, bias, act, next);           \
    break;
    BERTCPU_ROWS_CASE(1)
    BERTCPU_ROWS_CASE(2)
    BERTCPU_ROWS_CASE(3)
    BERTCPU_ROWS_CASE(4)
    BERTCPU_ROWS_CASE(5)
    BERTCPU_ROWS_CASE(6)
    BERTCPU_ROWS_CASE(7)
    BERTCPU_ROWS_CASE(8)
    BERTCPU_ROWS_CASE(9)
    BERTCPU_ROWS_CASE(10)
    BERTCPU_ROWS_CASE(11)
    BERTCPU_ROWS_CASE(12)
#undef BERTCPU_ROWS_CASE
    default:
      break;
  }
}

// ---- row kernels ----------------------------------------------------------------------------

template <class V>
void activation(const float* x, float* out, int n, Activation act) {
  constexpr int W = V::width;
  int i = 0;
  for (; i + W <= n; i += W) vactivation(V::load(x + i), act).store(out + i);
  if (i < n) vactivation(V::load_partial(x + i, n - i, 0.0f), act).store_partial(out + i, n - i);
}

template <class V>
void add_layernorm(const float* x, const float* add1, const float* add2, const float* gamma,
                   const float* beta, float eps, float* out, int n) {
  constexpr int W = V::width;
  V sum = V::zero();
  int i = 0;
  for (; i + W <= n; i += W) {
    V v = V::load(x + i);
    if (add1) v = v + V::load(add1 + i);
    if (add2) v = v + V::load(add2 + i);
    v.store(out + i);
    sum = sum + v;
  }
  if (i < n) {
    const int r = n - i;
    V v = V::load_partial(x + i, r, 0.0f);
    if (add1) v = v + V::load_partial(add1 + i, r, 0.0f);
    if (add2) v = v + V::load_partial(add2 + i, r, 0.0f);
    v.store_partial(out + i, r);
    sum = sum + v;
  }
  const float mean = sum.reduce_add() / n;
  const V vmean = V::set1(mean);
  V var = V::zero();
  for (i = 0; i + W <= n; i += W) {
    const V d = V::load(out + i) - vmean;
    var = V::fmadd(d, d, var);
  }
  if (i < n) {
    const V d = V::load_partial(out + i, n - i, mean) - vmean;
    var = V::fmadd(d, d, var);
  }
  const float variance = var.reduce_add() / n;
  const float inv_std = 1.0f / __builtin_sqrtf(variance + eps);
  const V vinv = V::set1(inv_std);
  for (i = 0; i + W <= n; i += W) {
    const V y = (V::load(out + i) - vmean) * vinv;
    V::fmadd(y, V::load(gamma + i), V::load(beta + i)).store(out + i);
  }
  if (i < n) {
    const int r = n - i;
    const V y = (V::load_partial(out + i, r, 0.0f) - vmean) * vinv;
    V::fmadd(y, V::load_partial(gamma + i, r, 0.0f), V::load_partial(beta + i, r, 0.0f))
        .store_partial(out + i, r);
  }
}

template <class V>
float softmax_numerators(float* x, int n, float scale) {
  constexpr int W = V::width;
  constexpr float kLowest = -3.4028234663852886e38f;
  V vmax = V::set1(kLowest);
  int i = 0;
  for (; i + W <= n; i += W) vmax = V::max(vmax, V::load(x + i));
  if (i < n) vmax = V::max(vmax, V::load_partial(x + i, n - i, kLowest));
  const V max = V::set1(vmax.reduce_max());
  const V vscale = V::set1(scale * 1.44269504088896341f);  // log2(e)
  V sum = V::zero();
  for (i = 0; i + W <= n; i += W) {
    const V e = softmax_exp(V::load(x + i), max, vscale);
    e.store(x + i);
    sum = sum + e;
  }
  if (i < n) {
    const int r = n - i;
    const V e = softmax_exp(V::load_partial(x + i, r, 0.0f), max, vscale);
    e.store_partial(x + i, r);
    sum = sum + V::load_partial(x + i, r, 0.0f);
  }
  return sum.reduce_add();
}

// gemm.h's packed layout: panel p (columns p * nr ...) holds its K rows of nr floats one after
// another. Blocks of W columns (rows of w) by W rows of B are loaded from w, transposed and stored
// as W rows of B; columns past N and rows past K are zeros or left out.
template <class V, int NV>
void pack_b_nk(const float* w, int N, int K, int ldw, float* out) {
  constexpr int W = V::width, NR = NV * W;
  for (int p = 0; p * NR < N; ++p) {
    float* panel = out + static_cast<ptrdiff_t>(p) * K * NR;
    for (int j0 = 0; j0 < NR; j0 += W) {
      const int first = p * NR + j0, columns = N - first < W ? N - first : W;  // may be <= 0
      for (int k0 = 0; k0 < K; k0 += W) {
        const int rows = K - k0 < W ? K - k0 : W;
        V block[W];
        for (int i = 0; i < W; ++i) {
          if (i >= columns) {
            block[i] = V::zero();
            continue;
          }
          const float* src = w + static_cast<ptrdiff_t>(first + i) * ldw + k0;
          block[i] = rows == W ? V::load(src) : V::load_partial(src, rows, 0.0f);
        }
        V::transpose(block);
        for (int k = 0; k < rows; ++k)
          block[k].store(panel + static_cast<ptrdiff_t>(k0 + k) * NR + j0);
      }
    }
  }
}

// The table of micro-tiles MR rows by NV vectors of V (MR * NV accumulators).
template <class V, int MR, int NV = 2>
KernelTable make_kernel_table(Isa isa) {
  return KernelTable{isa,
                     MR,
                     NV * V::width,
                     gemm_micro<V, MR, NV>,
                     activation<V>,
                     add_layernorm<V>,
                     softmax_numerators<V>,
                     pack_b_nk<V, NV>};
}

}  // namespace
}  // namespace bertcpu
