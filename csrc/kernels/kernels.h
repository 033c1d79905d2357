// The kernel table: one signature per kernel, one body per ISA.
//
// generic (kernels_generic.cpp) is plain C++ and the reference the others are tested against;
// avx2, avx512 and neon are the same template source (kernels_simd.h) compiled once per ISA with
// that ISA's flags (the aarch64 paths dotprod and i8mm share neon's table). The engine looks its table up once, when a model is loaded.
#pragma once

#include "cpu/isa.h"

namespace bertcpu {

// gelu_erf_rational: GELU(x) = x * Phi(x) as gelu_erf, its erf the rational function below instead
// of Abramowitz & Stegun's exp-based form: absolute error below 1.1e-6 (near |x| = 8) against below
// 5e-7, in half the instructions. The low-precision models' feed-forward layers use it: their GELU
// outputs are rounded to bf16 or quantized to 8 bits right after, far coarser than either.
enum class Activation {
  none = 0,
  gelu_erf = 1,
  gelu_tanh = 2,
  relu = 3,
  tanh = 4,
  gelu_erf_rational = 5
};

// erf(z) ~ z * P(z^2) / Q(z^2) for |z| <= kErfRationalBound (beyond it, erf(z) rounds to +-1 in
// fp32: z is clamped), P and Q of degree 5, highest coefficient first: fitted to a minimax error of
// 1.6e-8; evaluated in fp32 (Horner, FMA), the error is below 3.2e-7. The result is clamped to
// [-1, 1]: the function passes 1 just before the bound, and GELU's tail far below zero must be 0,
// not x times the last ulp below 1.
constexpr float kErfRationalBound = 3.92f;
constexpr float kErfRationalP[6] = {2.0343525e-6f, 2.8741479e-4f, 3.8673112e-3f,
                                    5.3057343e-2f, 1.9274607e-1f, 1.1283790f};
constexpr float kErfRationalQ[6] = {3.8063237e-5f, 1.1877876e-3f, 1.5170346e-2f,
                                    1.1507647e-1f, 5.0414842e-1f, 1.0f};

// Flags of the GEMM micro-kernel.
enum GemmFlags : int {
  kGemmAccumulate = 1,  // C += A*B instead of C = A*B
};

struct KernelTable {
  Isa isa;
  int mr;  // rows of C one micro-kernel call computes at most
  int nr;  // columns of a packed B panel (see gemm.h for the layout)

  // C[m x n] (=|+=) A[m x kc] * Bp[kc x nr], m <= mr, n <= nr. A is row-major with stride lda, Bp a
  // packed panel (kc rows of nr floats). When bias is non-null (nr floats, zero past n) it is added
  // and `act` applied after the product: pass them only with the last K chunk. When `next` is
  // non-null, the kc x nr floats from it (the strip the caller multiplies next) are prefetched
  // into L2 along the way: weights stream from DRAM, and the hardware prefetcher neither runs far
  // enough ahead nor follows the jump from one strip to the next.
  void (*gemm_micro)(int kc, const float* a, int lda, const float* bp, float* c, int ldc, int m,
                     int n, int flags, const float* bias, Activation act, const float* next);

  // out[i] = act(x[i]) for n floats; out may equal x.
  void (*activation)(const float* x, float* out, int n, Activation act);

  // out = LayerNorm(x + add1 + add2) * gamma + beta over n floats; add1/add2 may be null; out may
  // alias x. The sum is formed in one pass and normalized in a second, all in fp32.
  void (*add_layernorm)(const float* x, const float* add1, const float* add2, const float* gamma,
                        const float* beta, float eps, float* out, int n);

  // x[i] = exp(scale * (x[i] - max)) over n floats, in place; returns their sum: a softmax but for
  // its division, which attention applies to its output rows instead (d values each, not n).
  float (*softmax_numerators)(float* x, int n, float scale);

  // Packs W[N][K] (row n holds column n of B) as the B operand of gemm_micro: what gemm.h's
  // pack_b_nk does for this table's nr, here W x W blocks transposed in registers. Attention packs
  // every head's keys on every call.
  void (*pack_b_nk)(const float* w, int N, int K, int ldw, float* out);
};

const KernelTable& kernel_table(Isa isa);

// Defined in the per-ISA translation units.
const KernelTable& generic_kernels();
#if defined(BERTCPU_X86)
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();
const KernelTable& amx_kernels();  // avx512's kernels, as the amx path's (AMX has no fp32 product)
#endif
#if defined(BERTCPU_ARM64)
const KernelTable& neon_kernels();
#endif

}  // namespace bertcpu
