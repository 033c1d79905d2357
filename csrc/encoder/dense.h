// One dense (linear) layer of the encoder, in the model's precision.
//
// Weights always arrive in fp32 and are packed for the fp32 GEMM (gemm.h). A bfloat16 or int8
// model converts every layer once, when loading ends, into its low-precision packing
// (gemm_lowp.h) and frees the fp32 copy. Activations between layers stay fp32 in every precision
// (only the products of the dense layers change), but for the Q/K/V product's output when bf16
// attention reads it (run_input_rounded).
#pragma once

#include <functional>
#include <string>

#include "cpu/aligned_buffer.h"
#include "kernels/gemm.h"
#include "kernels/gemm_lowp.h"

namespace bertcpu {

enum class Precision { float32 = 0, bfloat16 = 1, int8 = 2 };

// "float32" | "bfloat16" | "int8".
const char* precision_name(Precision precision);
// Parses a precision_name(); throws std::invalid_argument otherwise.
Precision parse_precision(const std::string& name);

// What a model computes with: the fp32 table for everything but the dense products, and the
// low-precision table those use (null for a float32 model).
struct ModelKernels {
  Precision precision = Precision::float32;
  const KernelTable* fp32 = nullptr;
  const Bf16Kernels* bf16 = nullptr;
  const Int8Kernels* int8 = nullptr;

  // The path (ISA) of the dense products' kernels.
  Isa dense_isa() const;
};

class DenseLayer {
 public:
  // A layer of `out` x `in` weights (PyTorch layout [out][in]); the bias starts at zero.
  void init(const KernelTable& fp32, int out, int in);
  int out_features() const { return fp32_.out_features; }
  int in_features() const { return fp32_.in_features; }

  // Before convert() only: a low-precision layer no longer holds the fp32 weights.
  void set_weight(const float* weight);
  void set_bias(const float* bias);
  // The weight as the products use it: fp32, bf16-rounded, or the int8 values times their scale.
  void get_weight(float* weight) const;
  void get_bias(float* bias) const;
  // The bias (out_features floats), for a caller that adds it itself (with_bias = false).
  const float* bias() const;

  // The fp32 packing, for a caller that runs its own product over it (float32 layers only).
  const PackedLinear& fp32_packed() const { return fp32_; }

  // Repacks the weights for kernels.precision and frees the fp32 copy (nothing for float32).
  // input_range: for int8, an estimate of each input channel's magnitude, to balance the
  // quantization of inputs and weights (PackedLinearInt8::pack_weight); ignored otherwise.
  void convert(const ModelKernels& kernels, const float* input_range = nullptr);

  // C = act(A * W^T + bias) (bias only if with_bias) over M rows, threaded, on the kernels the
  // layer was converted for (fp32: `fp32`). `scratch` holds the low-precision copy of A.
  void run(const KernelTable& fp32, int M, const float* A, int lda, float* C, int ldc,
           bool with_bias, Activation act, AlignedBuffer& scratch) const;

  // A made ready once for one product (run_input) or several over parts of it (run_block): its
  // low-precision copy (in `scratch`, which must outlive the Input) or, for a float32 layer, A
  // itself. prepare() does it for all rows; begin_input() + prepare_row() row by row, for a
  // caller that writes A a row at a time (a LayerNorm: each row is converted while in L1).
  struct Input {
    const float* a = nullptr;
    int lda = 0;
    Bf16Rows bf16{};
    Int8Rows int8{};
  };
  Input prepare(int M, const float* A, int lda, AlignedBuffer& scratch) const;
  Input begin_input(int M, const float* A, int lda, AlignedBuffer& scratch) const;
  // Row i of A (at in.a + i * in.lda, written already) into the copy; any thread, once per row.
  void prepare_row(const Input& in, int i) const;
  // The same from `row` (in_features floats) instead of from in.a.
  void prepare_row(const Input& in, int i, const float* row) const;
  // C = act(A * W^T + bias) (bias only if with_bias) over the M prepared rows, threaded. A bfloat16
  // or int8 layer applies gelu_erf as Activation::gelu_erf_rational.
  void run_input(const KernelTable& fp32, int M, const Input& in, float* C, int ldc,
                 bool with_bias, Activation act) const;
  // C = A * W^T + bias (bias only if with_bias) over the M prepared rows, threaded, each value
  // rounded to bf16 by `round` (Bf16Kernels::convert_row) as C's rows are written: the product goes
  // block by block through per-thread fp32 memory that stays in L2, and only the bf16 rows reach C
  // (for a consumer that rounds them anyway: bf16 attention's q, k, v). Low-precision layers only.
  void run_input_rounded(const KernelTable& fp32, const Bf16Kernels& round, int M,
                         const Input& in, bf16* C, int ldc, bool with_bias) const;
  // act(A * W^T + bias) (bias only if with_bias) over the M prepared rows, threaded, each output
  // row handed to each_row(i, row) (out_features floats; any thread, once per row) for whatever
  // comes next: a LayerNorm, the next layer's input copy. A bfloat16 or int8 layer runs in tasks of
  // whole rows that go through per-thread fp32 memory staying in L2, and hands each task's rows
  // on from there: no trip through C and no pass of their own. Where whole-row tasks would leave
  // threads idle (a few rows) or read the weights too often (too few rows per weight byte, as
  // bf16's 12-row tiles), and for float32, the product fills C (ldc) and a pass over C hands the
  // rows on.
  using RowConsumer = std::function<void(int, const float*)>;
  void run_rows(const KernelTable& fp32, int M, const Input& in, float* C, int ldc,
                bool with_bias, Activation act, const RowConsumer& each_row) const;
  // Columns per packed panel: a block's column range is whole panels of this width.
  int panel_width() const;
  // One block of C = act(A * W^T + bias) on the calling thread (see gemm_int8_block; act as in
  // run_input): C at the block's first element, bias (padded; null for none) at column
  // b.p0 * panel_width().
  void run_block(const KernelTable& fp32, const Input& in, const GemmBlock& b, float* C, int ldc,
                 const float* bias, Activation act) const;

  // Bytes of the packed weights and bias.
  size_t bytes() const;

 private:
  Precision precision_ = Precision::float32;
  const Bf16Kernels* bf16_kernels_ = nullptr;  // set by convert()
  const Int8Kernels* int8_kernels_ = nullptr;
  PackedLinear fp32_;
  PackedLinearBf16 bf16_;
  PackedLinearInt8 int8_;
};

}  // namespace bertcpu
