// Kernel tables of the low-precision GEMMs (gemm_lowp.h): bf16 inputs with fp32 accumulation, and
// int8 weights times 8-bit activations (0..255 with a zero point; 0..127 on avx2) with int32
// accumulation.
//
// As in kernels.h, one table per path. generic (lowp_generic.cpp) is the scalar reference the
// others are tested against, and it does the same arithmetic: the same bf16 rounding and fp32
// summation order (except BFMMLA's, see Bf16Kernels::kgroup), the same integers. avx2 (int8 only,
// vpmaddubsw on 7-bit activations) lives in lowp_avx2.cpp, its zmm twin for AVX-512 without VNNI
// in lowp_avx512bw.cpp; the paths that need one more CPU feature have their own translation units:
// lowp_avxvnni.cpp (AVX-VNNI, int8 on ymm), lowp_avx512bf16.cpp (AVX512_BF16),
// lowp_avx512vnni.cpp (AVX512_VNNI) and lowp_amx.cpp (AMX
// tiles; the same kernels over a scalar model of the tile instructions, lowp_amx_model.cpp, run on
// every CPU: lowp_amx.h). Like kernels.h, this header pulls in no inline library code, so the ISA
// translation units can include it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace bertcpu {

// A bf16 value: the upper 16 bits of an fp32.
using bf16 = uint16_t;

// Rows of the A operand the drivers (gemm_lowp.cpp) allocate, and zero, past the last row, up to a
// multiple of this: a micro-kernel may read whole groups of kLowpRowAlign rows (AMX loads A 16
// rows at a time) and ignores the rows past m.
constexpr int kLowpRowAlign = 16;

struct Bf16Kernels {
  Isa isa;           // the fp32 path this table runs beside (a model on `isa` may pick it)
  const char* name;  // the table's own name
  int mr;  // rows of C one micro-kernel call computes at most
  int nr;  // columns of a packed panel (see gemm_lowp.h for the layout)

  // Value k of the row = bf16(x[k]) for k < n, 0 for n <= k < np, written at
  // out + activation_offset(a_pair_chunk, 0, 0, k). Rounds like vcvtneps2bf16 (and to_bf16()): to
  // nearest even, NaN stays a (quiet) NaN, denormals become signed zeros.
  void (*convert_row)(const float* x, int n, int np, bf16* out);

  // C[m x n] (=|+=) A[m x kc] * Bp[kc x nr], m <= mr, n <= nr, kc even. A holds bf16 rows of lda
  // values (A[i][k] at a + activation_offset(a_pair_chunk, lda, i, k)); Bp is a packed strip:
  // kc / 2 rows of nr column pairs (B[k][j], B[k+1][j]). Every output sums in fp32, pair after
  // pair, B[k+1] * A[k+1] first, then B[k] * A[k] (the order of vdpbf16ps; products of two bf16
  // are exact in fp32). Flags, bias and act as in KernelTable::gemm_micro.
  void (*gemm_micro)(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int m,
                     int n, int flags, const float* bias, Activation act);

  // K values a packed column holds together: 2 (the pairs above), or 4 for BFMMLA, whose strips
  // hold kc / 4 rows of nr column quads (B[k..k+3][j]) and which sums each quad in its own
  // rounding (aarch64 lowp_bf16.cpp: not bit for bit the pair order). K is zero-padded to it.
  int kgroup = 2;

  // The activation rows' layout: 0, row after row, or pairs of rows interleaved in chunks of this
  // many values (see activation_offset()).
  int a_pair_chunk = 0;

  // K is zero-padded to a multiple of this (a multiple of kgroup; 0 means kgroup): AMX multiplies
  // 32 K values per instruction. kGemmKc is a multiple of it, so every kc is too. The AMX tables
  // sum in TDPBF16PS's order, not the pair order above: per 32 K values, the even and the odd
  // products in two sums from zero, then their sum added (lowp_amx_model.cpp).
  int k_align = 0;

  // When set, called on a thread before a run of gemm_micro calls and after it (AMX: loads the
  // per-thread tile configuration, then releases the tiles).
  void (*begin_block)() = nullptr;
  void (*end_block)() = nullptr;
};

struct Int8Kernels {
  Isa isa;           // the fp32 path this table runs beside (a model on `isa` may pick it)
  const char* name;  // the table's own name (several int8 tables can share one fp32 path)
  int mr;            // rows of C one micro-kernel call computes at most
  int nr;            // columns of a packed panel
  int kgroup;        // consecutive K values a packed column holds together; K is zero-padded to it

  // Quantizes one row of k floats, but for its largest |x|, to 0..a_max with a zero point:
  // asymmetric, unlike the weights, so that a skewed row (a GELU output is >= -0.17) gets all
  // a_max + 1 levels instead of about half. The largest |x| -- x[t], t the first index of it, 0
  // for a zero row -- stays out: *top = t, *top_value = x[t], and the rest is quantized as if x[t]
  // were 0 (gemm_micro adds x[t]'s product back exactly). A row often has one value ~20x its rms, which
  // would otherwise set the scale of all the others. With r the row with x[t] = 0, lo = min(min r,
  // 0), hi = max(max r, 0): for hi == lo, scale = 0, zp = 0, q = 0; else inv = a_max / (hi -
  // lo), scale = (hi - lo) / a_max, zp = clamp(rint(-lo * inv), 0, a_max), q = clamp(rint(r * inv)
  // + zp, 0, a_max), so r ~ (q - zp) * scale. Writes q as bytes (uint8, or int8 q - a_offset),
  // then q = zp up to kp (the value 0), value j at byte activation_offset(a_pair_chunk, 0, 0, j)
  // of out; returns the scale and stores zp in *zero_point. Identical q, scale, zp, top on every
  // path of the same a_max (fp32 divisions and one fp32 product each, rounded to nearest even).
  // Inputs must be finite.
  float (*quantize_row)(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                        int32_t* top, float* top_value);

  // C[m x n] = act((float(acc - a_zero[i] * colsum[j]) * a_scale[i] + a_top_value[i] *
  // float(qw[a_top[i]][j])) * w_scale[j] + bias[j]), evaluated left to right with no fused
  // multiply-add, where acc[i][j] = sum over the kp (padded) K of qa[i][k] * qw[k][j] and colsum[j]
  // = sum over k of qw[k][j], all in int32, exactly. a: m quantized rows of lda bytes each
  // (qa[i][k] at byte activation_offset(a_pair_chunk, lda, i, k)); bp: one packed panel (kp /
  // kgroup groups of nr columns of kgroup int8; qw[k][j] at bp + packed_int8_offset(nr, kgroup,
  // k) + j * kgroup); colsum: the panel's weight column sums, computed at pack time; bias may be
  // null. m <= mr, n <= nr.
  //
  // a_top / a_top_value: each row's largest |x|, which quantize_row kept out of the row (its q is
  // the zero point) and which comes back here as the exact float times its input's int8 weights.
  // A kernel may skip the term of a row whose a_top_value is 0 (it adds 0).
  void (*gemm_micro)(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                     const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                     const float* a_top_value, const float* w_scale, const float* bias, float* c,
                     int ldc, int m, int n, Activation act);

  // The quantized row format holds q - a_offset: 128 (as int8) where the products are signed x
  // signed (aarch64 SDOT), else 0.
  int a_offset = 0;

  // The activation rows' layout, as Bf16Kernels::a_pair_chunk.
  int a_pair_chunk = 0;

  // As in Bf16Kernels: K is zero-padded to a multiple of k_align (0: kgroup), A padded with zp;
  // begin_block / end_block bracket a run of gemm_micro calls on one thread.
  int k_align = 0;
  void (*begin_block)() = nullptr;
  void (*end_block)() = nullptr;

  // The largest activation code: 255, or 127 where the products are vpmaddubsw pairs (AVX2
  // without VNNI), whose int16 sums hold 2 * 127 * 127 but not 2 * 255 * 127 (lowp_avx2.cpp).
  int a_max = 255;
};

// The multiple K is padded to for table kt.
template <class Table>
inline int k_alignment(const Table& kt) {
  return kt.k_align ? kt.k_align : kt.kgroup;
}

// Where the int8 weights of input k sit in a packed panel of nr columns in groups of kgroup K
// values: column j's at this offset + j * kgroup (every int8 table packs so).
inline size_t packed_int8_offset(int nr, int kgroup, int k) {
  return static_cast<size_t>(k / kgroup) * kgroup * nr + k % kgroup;
}

// Where value k of activation row i sits, in values from row 0's value 0, in a block of rows of
// row_values values each (K padded) laid out as a kernel table's a_pair_chunk says. 0: row after
// row. c > 0: rows 2p and 2p + 1 interleaved in chunks of c values -- c of row 2p, c of row 2p + 1,
// the next c of row 2p, ... -- so that one 16-byte load is a two-row operand of aarch64's USMMLA
// (c = 8 int8) or BFMMLA (c = 4 bf16) rather than two 8-byte loads and an insert. row_values is a
// multiple of c; a block of rows starts at an even row, and a micro-kernel given an odd count m
// of rows reads row m too, the other half of the last pair (the drivers write rows past the last
// as zeros; the products of its values are dropped).
inline size_t activation_offset(int c, size_t row_values, size_t i, size_t k) {
  if (c == 0) return i * row_values + k;
  return (i - i % 2) * row_values + k / c * 2 * c + i % 2 * c + k % c;
}

// Defined in the per-path translation units; gemm_lowp.h picks one after checking the CPU.
const Bf16Kernels& generic_bf16_kernels();
const Int8Kernels& generic_int8_kernels();
// The AMX kernels over the scalar tile model (lowp_amx_model.cpp), on every CPU: for the tests
// (isa generic), and standing in for the amx path's with BERTCPU_TEST_AMX_MODEL (isa amx).
const Bf16Kernels& amx_model_bf16_kernels(Isa isa = Isa::generic);
const Int8Kernels& amx_model_int8_kernels(Isa isa = Isa::generic);
// The generic kernels' epilogues of one row of a micro-tile (lowp_generic.cpp), shared with the
// AMX model kernels: row[0, n) = act(acc (+ row) + bias) for bf16, and the int8 formula of
// Int8Kernels::gemm_micro for the int32 sums acc.
void finish_bf16_row_scalar(const float* acc, float* row, int n, bool accumulate,
                            const float* bias, Activation act);
// top_weights: the row's top input's weights, column j's at top_weights[j * kgroup].
void finish_int8_row_scalar(const int32_t* acc, const int32_t* colsum, float a_scale,
                            int32_t a_zero, float top_value, const int8_t* top_weights, int kgroup,
                            const float* w_scale, const float* bias, float* row, int n,
                            Activation act);
#if defined(BERTCPU_X86)
const Bf16Kernels& avx512_bf16_kernels();
const Int8Kernels& avx2_int8_kernels();
const Int8Kernels& avx_vnni_int8_kernels();
const Int8Kernels& avx512_vnni_int8_kernels();
// The zmm kernel on vpmaddubsw + vpmaddwd (lowp_avx512bw.cpp): avx512's int8 table on CPUs
// without AVX512_VNNI, activations 0..127 as on avx2.
const Int8Kernels& avx512bw_int8_kernels();
// lowp_avxvnni.cpp's ymm kernel with the EVEX vpdpbusd of AVX512_VNNI + VL: the same source
// compiled for a CPU this project's test machines have, so its loops are tested where AVX-VNNI
// cannot run. Not chosen for models (the zmm kernel is faster on such CPUs).
const Int8Kernels& avx512_vnni_ymm_int8_kernels();
// The real AMX instructions (lowp_amx.cpp): only on CPUs and OSes that allow them, after the
// self-test (gemm_lowp.h).
const Bf16Kernels& amx_bf16_kernels();
const Int8Kernels& amx_int8_kernels();
#endif
#if defined(BERTCPU_ARM64)
const Int8Kernels& dotprod_int8_kernels();
const Int8Kernels& i8mm_int8_kernels();
const Bf16Kernels& neon_bf16_kernels();  // BFMMLA, on the i8mm path of CPUs with FEAT_BF16
#endif

}  // namespace bertcpu
