// The SIMD kernels compiled for aarch64's Advanced SIMD: 8 x 12 GEMM micro-tiles. 24 of the 32 q
// registers hold accumulators, 3 the row of B and the rest A values: per K step 11 loads (B, and
// one A value per row) feed 24 FMLA by element, within the two load ports of a Neoverse N1 and the
// three of a V1 or an Apple core. The same kernels serve the dotprod and i8mm paths, which differ
// only in their int8 / bf16 kernels.
#include "kernels/vec_neon.h"
#include "kernels/kernels_simd.h"

namespace bertcpu {

const KernelTable& neon_kernels() {
  static const KernelTable table = make_kernel_table<VecNeon, 8, 3>(Isa::neon);
  return table;
}

}  // namespace bertcpu
