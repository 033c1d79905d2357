// The int8 kernels for AVX2 without VNNI: vpmaddubsw multiplies unsigned activation bytes by signed
// weight bytes and adds adjacent pairs into int16 lanes with saturation, vpmaddwd by ones adds the
// two pairs of each 4-byte group into int32, vpaddd accumulates: lowp_int8_ymm.h's kernel with
// these three instructions in place of one vpdpbusd, on the same packing (K in groups of 4).
//
// The int16 pair sums must not saturate. With 8-bit weights (-127..127, as every path packs them)
// a pair reaches 2 * 255 * 127 = 64770 for activations 0..255, beyond 32767; so this path
// quantizes activations to 0..127 (Int8Kernels::a_max), where a pair stays within 2 * 127 * 127 =
// 32258 and every sum is exact. The weights keep all 8 bits: they carry most of int8's error
// (bench/RESULTS.md), and 7-bit weights cost all-MiniLM-L6-v2's sentence cosine 0.99944 -> 0.99825
// where 7-bit activations, with each row's largest |x| kept apart, cost 0.99953 -> 0.99923
// (bench/accuracy_lowp.py, 1000 sentences).
//
// Speed on this project's Zen 4 running AVX2 code: BERT-base int8 1.37-1.62x the kernel before
// it (bench/compare_builds.py), which widened both operands to int16 for vpmaddwd (exact at 8
// bits, but one multiply uop per 16 products instead of two per 32, plus the widening and twice
// the activation bytes); bench_gemm.py, one thread, 128 rows: 159-206 GOP/s against 109-155.
// A 4 x 24 tile (12 accumulators, three weight vectors, the broadcast group and vpmaddwd's
// ones); 6 x 16 ran out of registers (~15% slower in a timing loop of the same kernels).
#include "kernels/lowp_int8_ymm.h"

namespace bertcpu {

namespace {

struct MaddubsPairs {
  static __m256i dot(__m256i acc, __m256i a, __m256i b) {
    const __m256i pairs = _mm256_maddubs_epi16(a, b);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

constexpr int kActivationMax = 127;

}  // namespace

const Int8Kernels& avx2_int8_kernels() {
  static const Int8Kernels table =
      int8_ymm_table<MaddubsPairs, 4, 3, kActivationMax>(Isa::avx2, "avx2");
  return table;
}

}  // namespace bertcpu
