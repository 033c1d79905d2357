// The SIMD kernels compiled for AVX-512: 12 x 32 GEMM micro-tiles (24 zmm accumulators).
#include "kernels/vec_avx512.h"
#include "kernels/kernels_simd.h"

namespace bertcpu {

const KernelTable& avx512_kernels() {
  static const KernelTable table = make_kernel_table<VecAvx512, 12>(Isa::avx512);
  return table;
}

const KernelTable& amx_kernels() {
  static const KernelTable table = make_kernel_table<VecAvx512, 12>(Isa::amx);
  return table;
}

}  // namespace bertcpu
