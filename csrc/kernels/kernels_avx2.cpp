// The SIMD kernels compiled for AVX2 + FMA: 6 x 16 GEMM micro-tiles (12 ymm accumulators).
#include "kernels/vec_avx2.h"
#include "kernels/kernels_simd.h"

namespace bertcpu {

const KernelTable& avx2_kernels() {
  static const KernelTable table = make_kernel_table<VecAvx2, 6>(Isa::avx2);
  return table;
}

}  // namespace bertcpu
