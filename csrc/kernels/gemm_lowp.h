// Low-precision GEMMs over pre-packed weights, in the role of gemm.h's PackedLinear + gemm():
// C[M x N] = act(A[M x K] * W^T + bias) with fp32 A, C and bias, W given as PyTorch's [N][K].
//
// bf16: W is rounded to bf16 once at pack time, A row by row at each call (a pre-pass into
// scratch memory); products accumulate in fp32. The packed layout is the fp32 one (gemm.h:
// chunk-major, kGemmKc-row strips of nr-column panels) with rows taken in pairs: a strip holds
// kc / 2 rows of nr (B[k][j], B[k+1][j]) pairs, what vdpbf16ps consumes. K is zero-padded to even.
//
// int8: W is quantized once per output channel (symmetric, scale = max|w| / 127), A per row at
// each call (the same rule, into scratch memory). Products accumulate in int32 over the whole K
// (no K chunks: a 4x denser panel stays in cache without them, and the integers stay exact), then
// C = act(acc * scale_a[row] * scale_w[col] + bias). Panel-major: panel p holds K / kgroup groups
// of nr columns of kgroup consecutive int8 weights; K is zero-padded to kgroup.
#pragma once

#include <vector>

#include "cpu/aligned_buffer.h"
#include "kernels/gemm.h"
#include "kernels/lowp_kernels.h"

namespace bertcpu {

// fp32 -> bf16 exactly as Bf16Kernels::convert_row does it (the scalar form).
bf16 to_bf16(float x);
float bf16_to_float(bf16 x);
// Symmetric int8 quantization of n floats, the rule of Int8Kernels::quantize_row: returns
// max|x| / 127 and writes rint(x * (127 / max|x|)) into q.
float quantize_int8(const float* x, int n, int8_t* q);

// Largest K an int8 GEMM accepts: every int32 sum of (q + 128) * w stays below 2^31.
constexpr int kInt8MaxK = 65536;

// The bf16 kernels of path `isa`: generic, or avx512 (AVX-512 with AVX512_BF16). Throws
// std::invalid_argument for a path without bf16 kernels or one this CPU cannot run.
const Bf16Kernels& bf16_kernels(Isa isa);
// The int8 kernels of path `isa`: generic, avx2, or avx512 (AVX-512 with AVX512_VNNI). Throws
// like bf16_kernels().
const Int8Kernels& int8_kernels(Isa isa);
// The bf16 / int8 paths this CPU can run, lowest first (generic is always there).
std::vector<Isa> bf16_isas();
std::vector<Isa> int8_isas();
// The best bf16 / int8 path this CPU can run at or below `cap` (e.g. the model's fp32 path).
Isa best_bf16_isa(Isa cap);
Isa best_int8_isa(Isa cap);

// A weight matrix rounded to bf16 and packed for one bf16 kernel table, with its fp32 bias padded
// to whole panels.
struct PackedLinearBf16 {
  int in_features = 0, out_features = 0, nr = 0;
  int k_padded = 0;      // in_features rounded up to even
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
  int k_padded = 0;            // in_features rounded up to kgroup
  AlignedBuffer panels;        // ceil(out / nr) panels of k_padded * nr int8 (4 per float)
  AlignedBuffer scales;        // per output channel, padded like bias (zeros)
  AlignedBuffer compensation;  // 128 * column sums of the int8 weights (int32), padded
  AlignedBuffer bias;          // ceil(out / nr) * nr floats, zeros past out_features

  // Sets the shape for table kt; the bias starts at zero. Throws std::invalid_argument when in
  // exceeds kInt8MaxK.
  void init(const Int8Kernels& kt, int out, int in);
  // weight: [out_features][in_features] (PyTorch layout).
  void pack_weight(const float* weight);
  void set_bias(const float* values);
  // The int8 weight in PyTorch layout [out][in] and its per-channel scales [out].
  void unpack_weight(int8_t* weight, float* scales) const;
};

// C = act(A * W^T + bias) (bias only if with_bias), split into (row block x column block) tasks
// over the thread pool like gemm(). A is converted to bf16 first, into `scratch` (grown as needed;
// reuse it across calls to avoid reallocating).
void linear_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const float* A, int lda,
                 float* C, int ldc, bool with_bias, Activation act, AlignedBuffer& scratch);

// The same with int8 weights; A is quantized per row first, into `scratch`.
void linear_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const float* A, int lda,
                 float* C, int ldc, bool with_bias, Activation act, AlignedBuffer& scratch);

}  // namespace bertcpu
