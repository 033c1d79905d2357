// fp32 GEMM over pre-packed B: C[M x N] = act(A[M x K] * B[K x N] + bias).
//
// B is packed once into panels of `nr` columns (the micro-kernel's width), zero-padded past N, and
// each panel is split along K into strips of kGemmKc rows. Panel-major: panel p holds its strips
// one after another (kc rows of nr floats each), so the whole panel is one contiguous run of
// memory. A micro-kernel reads one strip contiguously while it sweeps the rows of A; a few-row
// product (batch 1) walks its panels strip after strip and so streams each task's weights from
// DRAM in one run, which the prefetchers follow.
#pragma once

#include <vector>

#include "cpu/aligned_buffer.h"
#include "cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace bertcpu {

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// K chunk: a kGemmKc x nr strip (16 KiB for AVX2) stays in L1 while the micro-kernel sweeps the
// rows of A; the kGemmKc-wide slice of those rows stays in L2.
constexpr int kGemmKc = 256;

// Where the strip of panel p for the K chunk starting at k0 begins in a packed [K x N] operand
// (`panels` is kept so that callers need not know the layout).
inline size_t strip_offset(int K, int panels, int nr, int k0, int p) {
  (void)panels;
  return (static_cast<size_t>(p) * K + k0) * nr;
}

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

// C = act(A * B + bias) on the calling thread, for the columns of panels [p0, p0 + ceil(N / nr))
// of a packed operand Bp of `panels` panels; bias (padded) and C start at column p0 * nr.
void gemm_serial(const KernelTable& kt, int M, int N, int K, const float* A, int lda,
                 const float* Bp, int panels, int p0, float* C, int ldc, const float* bias,
                 Activation act);

// One task of a threaded product: rows [m0, m1) of A times panels [p0, p1) of B.
struct GemmBlock {
  int m0, m1, p0, p1;
};

// How an M-row product over `panels` panels of width nr (micro-tiles of mr rows) is split for
// `threads` threads: row blocks of whole tiles, each cut into runs of panels that shrink toward
// the end of the product, in the order the pool should hand them out.
std::vector<GemmBlock> gemm_blocks(int M, int panels, int mr, int nr, int threads);

// f(block) for every block of gemm_blocks(), on the thread pool. Shared by every precision.
template <class F>
void for_each_gemm_block(int M, int panels, int mr, int nr, const F& f) {
  const std::vector<GemmBlock> blocks = gemm_blocks(M, panels, mr, nr, get_num_threads());
  parallel_for(static_cast<int>(blocks.size()), [&](int task) { f(blocks[task]); });
}

// The same as gemm_serial, split into gemm_blocks() tasks over the thread pool.
void gemm(const KernelTable& kt, int M, int N, int K, const float* A, int lda, const float* Bp,
          float* C, int ldc, const float* bias, Activation act);

inline void linear(const KernelTable& kt, const PackedLinear& w, int M, const float* A, int lda,
                   float* C, int ldc, bool with_bias, Activation act) {
  gemm(kt, M, w.out_features, w.in_features, A, lda, w.panels.data(), C, ldc,
       with_bias ? w.bias.data() : nullptr, act);
}

}  // namespace bertcpu
