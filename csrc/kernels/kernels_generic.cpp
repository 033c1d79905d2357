// Portable scalar kernels: the reference every other path is tested against, and the path of
// CPUs without AVX2 and of non-x86 builds.
#include <algorithm>
#include <cmath>

#include "kernels/gemm.h"
#include "kernels/kernels.h"

namespace bertcpu {

namespace {

constexpr int kMr = 4;
constexpr int kNr = 8;

// erf by kernels.h's rational function, in the SIMD kernels' order of operations.
inline float erf_rational(float x) {
  const float z = std::min(std::max(x, -kErfRationalBound), kErfRationalBound);
  const float t = z * z;
  float p = kErfRationalP[0], q = kErfRationalQ[0];
  for (int i = 1; i < 6; ++i) {
    p = std::fma(p, t, kErfRationalP[i]);
    q = std::fma(q, t, kErfRationalQ[i]);
  }
  return std::min(std::max(z * p / q, -1.0f), 1.0f);
}

inline float apply_activation(float x, Activation act) {
  switch (act) {
    case Activation::none:
      return x;
    case Activation::gelu_erf:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Activation::gelu_erf_rational:
      return 0.5f * x * (1.0f + erf_rational(x * 0.70710678118654752f));
    case Activation::gelu_tanh: {
      const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(inner));
    }
    case Activation::relu:
      return x > 0.0f ? x : 0.0f;
    case Activation::tanh:
      return std::tanh(x);
  }
  return x;
}

void gemm_micro(int kc, const float* a, int lda, const float* bp, float* c, int ldc, int m, int n,
                int flags, const float* bias, Activation act, const float* next) {
  float acc[kMr][kNr] = {};
  for (int k = 0; k < kc; ++k) {
    if (next) __builtin_prefetch(next + k * kNr, 0, 2);
    const float* b = bp + k * kNr;
    for (int i = 0; i < m; ++i) {
      const float ai = a[i * lda + k];
      for (int j = 0; j < kNr; ++j) acc[i][j] += ai * b[j];
    }
  }
  for (int i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int j = 0; j < n; ++j) {
      float v = acc[i][j];
      if (flags & kGemmAccumulate) v += row[j];
      if (bias) v += bias[j];
      row[j] = apply_activation(v, act);
    }
  }
}

void activation(const float* x, float* out, int n, Activation act) {
  for (int i = 0; i < n; ++i) out[i] = apply_activation(x[i], act);
}

void add_layernorm(const float* x, const float* add1, const float* add2, const float* gamma,
                   const float* beta, float eps, float* out, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    float v = x[i];
    if (add1) v += add1[i];
    if (add2) v += add2[i];
    out[i] = v;
    sum += v;
  }
  const float mean = sum / n;
  float var = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float d = out[i] - mean;
    var += d * d;
  }
  const float rstd = 1.0f / std::sqrt(var / n + eps);
  for (int i = 0; i < n; ++i) out[i] = (out[i] - mean) * rstd * gamma[i] + beta[i];
}

float softmax_numerators(float* x, int n, float scale) {
  float max = x[0];
  for (int i = 1; i < n; ++i) max = std::max(max, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(scale * (x[i] - max));
    sum += x[i];
  }
  return sum;
}

void pack_keys(const float* w, int N, int K, int ldw, float* out) {
  pack_b_nk(w, N, K, ldw, kNr, out);
}

}  // namespace

const KernelTable& generic_kernels() {
  static const KernelTable table{Isa::generic, kMr,           kNr,
                                 gemm_micro,   activation,    add_layernorm,
                                 softmax_numerators,          pack_keys};
  return table;
}

}  // namespace bertcpu
