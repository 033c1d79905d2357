// The int8 kernels for AVX-512 with AVX512_VNNI: lowp_int8_avx512.h's 8 x 48 zmm micro-tile on
// vpdpbusd, which multiplies unsigned by signed bytes: the activations' 0..255 values as they are,
// the int8 weights. Called only when the CPU has AVX512_VNNI (gemm_lowp.cpp).
#include "kernels/lowp_kernels.h"
#include "kernels/lowp_int8_avx512.h"
#include "kernels/lowp_int8_ymm.h"

namespace bertcpu {

namespace {

struct ZmmDpbusd {
  static __m512i dot(__m512i acc, __m512i a, __m512i b) { return _mm512_dpbusd_epi32(acc, a, b); }
};

// vpdpbusd on ymm, EVEX-encoded (AVX512_VNNI + VL): lowp_avxvnni.cpp's VEX instruction.
struct EvexDpbusd {
  static __m256i dot(__m256i acc, __m256i a, __m256i b) { return _mm256_dpbusd_epi32(acc, a, b); }
};

}  // namespace

const Int8Kernels& avx512_vnni_int8_kernels() {
  static const Int8Kernels table = int8_zmm_table<ZmmDpbusd, 255>(Isa::avx512, "avx512");
  return table;
}

const Int8Kernels& avx512_vnni_ymm_int8_kernels() {
  static const Int8Kernels table =
      int8_ymm_table<EvexDpbusd, 6, 2>(Isa::avx512, "avx512vnni_ymm");
  return table;
}

}  // namespace bertcpu
