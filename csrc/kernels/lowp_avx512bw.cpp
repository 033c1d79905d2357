// The int8 kernels for AVX-512 CPUs without AVX512_VNNI (Skylake-SP and -X): lowp_int8_avx512.h's
// 8 x 48 zmm micro-tile on lowp_avx2.cpp's instructions at twice the width -- vpmaddubsw multiplies
// unsigned activation bytes by signed weight bytes and adds adjacent pairs into int16 lanes,
// vpmaddwd by ones adds the two pairs of each 4-byte group into int32, vpaddd accumulates -- on
// activations 0..127, so that no int16 pair sum saturates (lowp_avx2.cpp says why: 2 * 127 * 127
// = 32258). On CPUs with two 512-bit multiply ports these run at twice the ymm kernel's products
// per cycle (llvm-mca, skylake-avx512: 6 cycles for the same six vpmaddubsw + vpmaddwd pairs on
// zmm as on ymm); on Zen 4, which splits a zmm operation in two, at the same rate.
#include "kernels/lowp_kernels.h"
#include "kernels/lowp_int8_avx512.h"

namespace bertcpu {

namespace {

struct ZmmMaddubsPairs {
  static __m512i dot(__m512i acc, __m512i a, __m512i b) {
    const __m512i pairs = _mm512_maddubs_epi16(a, b);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
  }
};

constexpr int kActivationMax = 127;

}  // namespace

const Int8Kernels& avx512bw_int8_kernels() {
  static const Int8Kernels table =
      int8_zmm_table<ZmmMaddubsPairs, kActivationMax>(Isa::avx512, "avx512bw");
  return table;
}

}  // namespace bertcpu
