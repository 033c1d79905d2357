// The int8 kernels for AVX-VNNI (Intel since Alder Lake, AMD since Zen 5): vpdpbusd on ymm,
// VEX-encoded, adds 4 products of unsigned activation bytes and signed weight bytes into each
// int32 lane without intermediate saturation, so weights keep all 8 bits. Called only when CPUID
// reports AVX-VNNI (gemm_lowp.cpp). The same kernel, EVEX-encoded, is avx512_vnni_ymm in
// lowp_avx512vnni.cpp, which is what tests it on CPUs without AVX-VNNI. A 6 x 16 micro-tile:
// 12 accumulators, two weight vectors and the broadcast group.
#include "kernels/lowp_int8_ymm.h"

namespace bertcpu {

namespace {

struct VexDpbusd {
  static __m256i dot(__m256i acc, __m256i a, __m256i b) {
    return _mm256_dpbusd_avx_epi32(acc, a, b);
  }
};

}  // namespace

const Int8Kernels& avx_vnni_int8_kernels() {
  static const Int8Kernels table = int8_ymm_table<VexDpbusd, 6, 2>(Isa::avx2, "avxvnni");
  return table;
}

}  // namespace bertcpu
