// Low-precision GEMMs over pre-packed weights, in the role of gemm.h's PackedLinear + gemm():
// C[M x N] = act(A[M x K] * W^T + bias) with fp32 A, C and bias, W given as PyTorch's [N][K].
//
// bf16: W is rounded to bf16 once at pack time, A row by row at each call (a pre-pass into
// scratch memory); products accumulate in fp32. The packed layout is the fp32 one (gemm.h:
// panel-major, kGemmKc-row strips of nr-column panels) with rows taken in pairs: a strip holds
// kc / 2 rows of nr (B[k][j], B[k+1][j]) pairs, what vdpbf16ps and tdpbf16ps consume (BFMMLA:
// kc / 4 rows of quads, Bf16Kernels::kgroup). K is zero-padded to the group, or to whole AMX
// tiles (Bf16Kernels::k_align).
//
// The converted or quantized rows of A are laid out as the kernel table's a_pair_chunk says:
// row after row, or (aarch64 BFMMLA and USMMLA) pairs of rows interleaved in K chunks, so that a
// two-row operand is one load (lowp_kernels.h, activation_offset()).
//
// int8: W is quantized once per output channel (symmetric int8, scale = max|w| / 127), A per row
// at each call, into scratch memory, asymmetrically: q in 0..255 with a zero point zp, x ~ (q - zp)
// * scale_a, over [min(x, 0), max(x, 0)] (Int8Kernels::quantize_row), so that skewed rows such as
// GELU outputs get the full 256 levels -- all but each row's largest |x| ("top1-apart"), which is
// kept out of the quantization so that the rest of the row sets the scale: a row of transformer
// activations often has one channel ~20x its rms (all-MiniLM-L6-v2's [CLS] rows), which would
// otherwise leave the others a few levels (bench/int8_emulation.py, bench/RESULTS.md). Products
// accumulate in int32 over the whole K (no K chunks: a 4x denser panel stays in cache without
// them, and the integers stay exact), then C = act((float(acc - zp[row] * colsum_w[col]) *
// scale_a[row] + top_value[row] * w[top[row]][col]) * scale_w[col] + bias), colsum_w being the
// column sums of the int8 weights and w the int8 weights (Int8Kernels::gemm_micro). Panel-major:
// panel p holds K / kgroup groups of nr columns of kgroup consecutive int8 weights; K is
// zero-padded to kgroup or k_align (A is padded with zp).
#pragma once

#include <string>
#include <vector>

#include "cpu/aligned_buffer.h"
#include "kernels/gemm.h"
#include "kernels/lowp_kernels.h"

namespace bertcpu {

// fp32 -> bf16 exactly as Bf16Kernels::convert_row does it (the scalar form).
bf16 to_bf16(float x);
float bf16_to_float(bf16 x);
// Symmetric int8 quantization of n floats, the rule of the weights (one output channel): returns
// max|x| / 127 and writes rint(x * (127 / max|x|)) into q (all 0 for a zero channel).
float quantize_int8(const float* x, int n, int8_t* q);

// Largest K an int8 GEMM accepts: every int32 sum of q * w (q in 0..255, |w| <= 127) stays below
// 2^31, and so do zp * colsum_w and their difference.
constexpr int kInt8MaxK = 65536;

// The bf16 kernels of path `isa`: generic, avx512 (AVX-512 with AVX512_BF16), amx (AMX-BF16,
// see below) or i8mm (FEAT_BF16). Throws std::invalid_argument for a path without bf16 kernels or
// one this CPU cannot run.
const Bf16Kernels& bf16_kernels(Isa isa);
// The bf16 kernel table called `name` (Bf16Kernels::name: generic, amx_model, avx512, amx, i8mm),
// else bf16_kernels(parse_isa(name)). Throws like int8_kernels(name).
const Bf16Kernels& bf16_kernels(const std::string& name);
// The best int8 kernels beside fp32 path `isa`: generic; for avx2 the AVX-VNNI kernels when the
// CPU has AVX-VNNI, else the vpmaddubsw ones; for avx512 the AVX512_VNNI kernels, else the zmm
// vpmaddubsw ones (avx512bw); amx (AMX-INT8).
// Throws like bf16_kernels().
const Int8Kernels& int8_kernels(Isa isa);
// The int8 kernel table called `name` (Int8Kernels::name: generic, amx_model, avx2, avxvnni,
// avx512bw, avx512vnni_ymm, avx512, amx, dotprod, i8mm), else int8_kernels(parse_isa(name)). Throws
// std::invalid_argument for an unknown name, a path without int8 kernels, or a table this CPU
// cannot run.
const Int8Kernels& int8_kernels(const std::string& name);
// Every bf16 / int8 kernel table this CPU can run, by name, lowest first: the models' choices and
// the test twins (amx_model: the AMX kernels over the scalar tile model, on every CPU;
// avx512vnni_ymm: the AVX-VNNI kernel EVEX-encoded).
std::vector<std::string> bf16_kernel_names();
std::vector<std::string> int8_kernel_names();
// The bf16 / int8 paths this CPU can run, lowest first (generic is always there).
std::vector<Isa> bf16_isas();
std::vector<Isa> int8_isas();
// The best bf16 / int8 path this CPU can run at or below `cap` (e.g. the model's fp32 path).
Isa best_bf16_isa(Isa cap);
Isa best_int8_isa(Isa cap);

// The amx path's low-precision kernels, decided once, at first use: the AMX tables when the CPU and
// the OS allow them (cpu_isa.h: Isa::amx) and they pass lowp_self_test(); else none, and the amx
// path's bf16 / int8 products fall back to avx512's. warning: why AMX the CPU reports is not used
// (the OS refused the tile state, or the self-test failed), else empty.
struct AmxSelection {
  const Bf16Kernels* bf16 = nullptr;
  const Int8Kernels* int8 = nullptr;
  std::string warning;
};
const AmxSelection& amx_selection();

// The known-answer test of a pair of kernel tables, on the calling thread: a small product with
// K, M and N past whole tiles, whose exact answer (small integers for bf16) the generic tables
// compute too. Returns "" when both tables agree with them bit for bit, else what went wrong; an
// illegal instruction (SIGILL) raised meanwhile is caught and reported, not fatal.
// `corrupt` (the BERTCPU_TEST_AMX_MODEL=wrong hook) alters one output before the comparison.
std::string lowp_self_test(const Bf16Kernels& bf16, const Int8Kernels& int8,
                           bool corrupt = false);

// A weight matrix rounded to bf16 and packed for one bf16 kernel table, with its fp32 bias padded
// to whole panels.
struct PackedLinearBf16 {
  int in_features = 0, out_features = 0, nr = 0, kgroup = 2;
  int k_padded = 0;      // in_features rounded up to k_alignment() of the table
  AlignedBuffer panels;  // packed_size(k_padded, out_features, nr) bf16 values (2 per float)
  AlignedBuffer bias;    // ceil(out / nr) * nr floats, zeros past out_features

  // Sets the shape for table kt; the bias starts at zero.
  void init(const Bf16Kernels& kt, int out, int in);
  // weight: [out_features][in_features] (PyTorch layout).
  void pack_weight(const float* weight);
  void set_bias(const float* values);
  // The bf16 weight, as fp32, in PyTorch layout [out][in].
  void unpack_weight(float* weight) const;
};

// A weight matrix quantized to int8 per output channel and packed for one int8 kernel table.
struct PackedLinearInt8 {
  int in_features = 0, out_features = 0, nr = 0, kgroup = 0;
  int k_padded = 0;            // in_features rounded up to k_alignment() of the table
  AlignedBuffer panels;        // ceil(out / nr) panels of k_padded * nr int8 (4 per float)
  AlignedBuffer scales;        // per output channel, padded like bias (zeros)
  AlignedBuffer compensation;  // column sums of the int8 weights (int32), padded (zeros)
  AlignedBuffer bias;          // ceil(out / nr) * nr floats, zeros past out_features
  // Empty, or in_features factors t: each activation row is multiplied by t before it is
  // quantized, and column k of the weight divided by t[k] before it is, which leaves the product
  // as it is but moves range between the two (see pack_weight).
  AlignedBuffer input_scale;

  // Sets the shape for table kt; the bias starts at zero. Throws std::invalid_argument when in
  // exceeds kInt8MaxK.
  void init(const Int8Kernels& kt, int out, int in);
  // weight: [out_features][in_features] (PyTorch layout). input_range, if given, estimates each
  // input channel's magnitude (in_features values; e.g. |gamma| + |beta| of the LayerNorm before
  // the layer): with m[k] = max over n |weight[n][k]|, the input scale becomes
  // t[k] = sqrt(m[k] / input_range[k]) (1 where either is 0), so both sides of the product see a
  // channel range of sqrt(input_range[k] * m[k]). Per-token quantization otherwise spends its
  // levels on a few large input channels (a SmoothQuant-style migration, without calibration data).
  void pack_weight(const float* weight, const float* input_range = nullptr);
  void set_bias(const float* values);
  // The int8 weight in PyTorch layout [out][in] and its per-channel scales [out] (of the weight
  // divided by input_scale when that is set).
  void unpack_weight(int8_t* weight, float* scales) const;
};

// A's rows as one table's kernels read them: rounded to bf16 (Bf16Rows) or quantized per row
// (Int8Rows), made once by convert_rows_bf16 / quantize_rows_int8 (on up to max_threads threads,
// 0 meaning get_num_threads(); into `scratch`, which is grown as needed: reuse it across calls)
// for any number of products over parts of them. Rows past M are zeros (kLowpRowAlign).
struct Bf16Rows {
  bf16* rows;  // M rows of k_padded values
  int k_padded;
};
struct Int8Rows {
  uint8_t* rows;     // M rows of row_bytes
  size_t row_bytes;
  float* scale;      // per row
  int32_t* zero;     // per row
  int32_t* top;      // per row: the input of the row's largest |x| (the first, in a tie)
  float* top_value;  // per row: that x, kept out of the quantized row
};

Bf16Rows convert_rows_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const float* A,
                           int lda, AlignedBuffer& scratch, int max_threads = 0);
Int8Rows quantize_rows_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const float* A,
                            int lda, AlignedBuffer& scratch, int max_threads = 0);

// The same, row by row, for a caller that makes A a row at a time (a LayerNorm) and converts each
// row while it is still in L1: begin_rows_* sizes `scratch` for M rows (and writes the zeros past
// them), then *_row_* writes row i, on any thread, once per row.
Bf16Rows begin_rows_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M,
                         AlignedBuffer& scratch);
void convert_row_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, const Bf16Rows& a, int i,
                      const float* row);
Int8Rows begin_rows_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M,
                         AlignedBuffer& scratch);
void quantize_row_int8(const Int8Kernels& kt, const PackedLinearInt8& w, const Int8Rows& a, int i,
                       const float* row);

// One block of C = act(A * W^T + bias), on the calling thread (within the table's begin_block /
// end_block): rows [b.m0, b.m1) of the prepared A times panels [b.p0, b.p1) of W. C points at the
// block's first element (row b.m0, column b.p0 * nr), bias (padded, or null for none) at column
// b.p0 * nr, as in gemm_serial().
void gemm_bf16_block(const Bf16Kernels& kt, const PackedLinearBf16& w, const Bf16Rows& a,
                     const GemmBlock& b, float* C, int ldc, const float* bias, Activation act);
void gemm_int8_block(const Int8Kernels& kt, const PackedLinearInt8& w, const Int8Rows& a,
                     const GemmBlock& b, float* C, int ldc, const float* bias, Activation act);

// C = act(A * W^T + bias) (bias only if with_bias): the rows prepared as above, then split into
// gemm_blocks() tasks like gemm(), on up to max_threads threads (0: get_num_threads(); 1: all on
// the calling thread).
void linear_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const float* A, int lda,
                 float* C, int ldc, bool with_bias, Activation act, AlignedBuffer& scratch,
                 int max_threads = 0);
void linear_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const float* A, int lda,
                 float* C, int ldc, bool with_bias, Activation act, AlignedBuffer& scratch,
                 int max_threads = 0);

// The products of linear_bf16 / linear_int8 over rows prepared already.
void linear_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const Bf16Rows& a,
                 float* C, int ldc, bool with_bias, Activation act, int max_threads = 0);
void linear_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const Int8Rows& a,
                 float* C, int ldc, bool with_bias, Activation act, int max_threads = 0);

}  // namespace bertcpu
