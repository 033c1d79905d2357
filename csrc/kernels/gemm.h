// fp32 GEMM over pre-packed B: C[M x N] = act(A[M x K] * B[K x N] + bias).
//
// B is packed once into panels of `nr` columns (the micro-kernel's width): panel p holds, for each
// k in [0, K), the nr values B[k][p*nr .. p*nr+nr), zero-padded past N. A micro-kernel call then
// reads a panel strip contiguously, and a panel strip of KC rows stays in L1 while it sweeps A.
#pragma once

#include "cpu/aligned_buffer.h"
#include "kernels/kernels.h"

namespace bertcpu {

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Floats a packed [K x N] operand occupies for panel width nr.
inline size_t packed_size(int K, int N, int nr) {
  return static_cast<size_t>(ceil_div(N, nr)) * nr * K;
}

// Packs B given as W[N][K] (row n holds column n of B; PyTorch Linear weights, attention keys).
void pack_b_nk(const float* w, int N, int K, int ldw, int nr, float* out);
// Packs B given row-major as B[K][N] (attention values).
void pack_b_kn(const float* b, int K, int N, int ldb, int nr, float* out);

// A weight matrix packed for one kernel table, with its bias padded to whole panels.
struct PackedLinear {
  int in_features = 0, out_features = 0, nr = 0;
  AlignedBuffer panels;  // packed_size(in, out, nr)
  AlignedBuffer bias;    // ceil(out / nr) * nr, zeros past out_features

  // Sets the shape for panel width nr; the bias starts at zero.
  void init(int nr, int out, int in);
  // weight: [out_features][in_features] (PyTorch layout).
  void pack_weight(const float* weight);
  void set_bias(const float* values);
  // The weight back in PyTorch layout [out][in].
  void unpack_weight(float* weight) const;
};

// C = act(A * Bp + bias) on the calling thread. Bp packed with kt.nr; bias padded or null.
void gemm_serial(const KernelTable& kt, int M, int N, int K, const float* A, int lda,
                 const float* Bp, float* C, int ldc, const float* bias, Activation act);

// The same, split into (row block x column block) tasks over the thread pool.
void gemm(const KernelTable& kt, int M, int N, int K, const float* A, int lda, const float* Bp,
          float* C, int ldc, const float* bias, Activation act);

inline void linear(const KernelTable& kt, const PackedLinear& w, int M, const float* A, int lda,
                   float* C, int ldc, bool with_bias, Activation act) {
  gemm(kt, M, w.out_features, w.in_features, A, lda, w.panels.data(), C, ldc,
       with_bias ? w.bias.data() : nullptr, act);
}

}  // namespace bertcpu
