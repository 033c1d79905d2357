#include "encoder/dense.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cpu/thread_pool.h"

namespace bertcpu {

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::float32:
      return "float32";
    case Precision::bfloat16:
      return "bfloat16";
    case Precision::int8:
      return "int8";
  }
  return "?";
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::float32, Precision::bfloat16, Precision::int8})
    if (name == precision_name(p)) return p;
  throw std::invalid_argument("unknown dtype '" + name + "' (float32, bfloat16 or int8)");
}

Isa ModelKernels::dense_isa() const {
  switch (precision) {
    case Precision::bfloat16:
      return bf16->isa;
    case Precision::int8:
      return int8->isa;
    case Precision::float32:
      break;
  }
  return fp32->isa;
}

void DenseLayer::init(const KernelTable& fp32, int out, int in) { fp32_.init(fp32.nr, out, in); }

void DenseLayer::set_weight(const float* weight) {
  if (precision_ != Precision::float32)
    throw std::invalid_argument(std::string("the weights of a ") + precision_name(precision_) +
                                " model cannot change once it is loaded");
  fp32_.pack_weight(weight);
}

void DenseLayer::set_bias(const float* bias) {
  switch (precision_) {
    case Precision::float32:
      fp32_.set_bias(bias);
      break;
    case Precision::bfloat16:
      bf16_.set_bias(bias);
      break;
    case Precision::int8:
      int8_.set_bias(bias);
      break;
  }
}

void DenseLayer::get_weight(float* weight) const {
  const size_t n = static_cast<size_t>(out_features()) * in_features();
  switch (precision_) {
    case Precision::float32:
      fp32_.unpack_weight(weight);
      break;
    case Precision::bfloat16:
      bf16_.unpack_weight(weight);
      break;
    case Precision::int8: {
      std::vector<int8_t> q(n);
      std::vector<float> scales(out_features());
      int8_.unpack_weight(q.data(), scales.data());
      const float* t = int8_.input_scale.size() ? int8_.input_scale.data() : nullptr;
      for (size_t i = 0; i < n; ++i)
        weight[i] = q[i] * scales[i / in_features()] * (t ? t[i % in_features()] : 1.0f);
      break;
    }
  }
}

const float* DenseLayer::bias() const {
  switch (precision_) {
    case Precision::bfloat16:
      return bf16_.bias.data();
    case Precision::int8:
      return int8_.bias.data();
    case Precision::float32:
      break;
  }
  return fp32_.bias.data();
}

void DenseLayer::get_bias(float* bias) const {
  std::memcpy(bias, this->bias(), out_features() * sizeof(float));
}

void DenseLayer::convert(const ModelKernels& kernels, const float* input_range) {
  if (kernels.precision == precision_) return;
  if (precision_ != Precision::float32)
    throw std::invalid_argument("a dense layer converts only from float32");
  const int out = out_features(), in = in_features();
  std::vector<float> weight(static_cast<size_t>(out) * in), bias(out);
  get_weight(weight.data());
  get_bias(bias.data());
  if (kernels.precision == Precision::bfloat16) {
    bf16_kernels_ = kernels.bf16;
    bf16_.init(*kernels.bf16, out, in);
    bf16_.pack_weight(weight.data());
    bf16_.set_bias(bias.data());
  } else {
    int8_kernels_ = kernels.int8;
    int8_.init(*kernels.int8, out, in);
    int8_.pack_weight(weight.data(), input_range);
    int8_.set_bias(bias.data());
  }
  precision_ = kernels.precision;
  // Free the fp32 copy, keeping its shape (out_features / in_features read it).
  fp32_.panels = AlignedBuffer();
  fp32_.bias = AlignedBuffer();
}

void DenseLayer::run(const KernelTable& fp32, int M, const float* A, int lda, float* C, int ldc,
                     bool with_bias, Activation act, AlignedBuffer& scratch) const {
  run_input(fp32, M, prepare(M, A, lda, scratch), C, ldc, with_bias, act);
}

DenseLayer::Input DenseLayer::begin_input(int M, const float* A, int lda,
                                          AlignedBuffer& scratch) const {
  Input in;
  in.a = A;
  in.lda = lda;
  if (precision_ == Precision::bfloat16)
    in.bf16 = begin_rows_bf16(*bf16_kernels_, bf16_, M, scratch);
  if (precision_ == Precision::int8) in.int8 = begin_rows_int8(*int8_kernels_, int8_, M, scratch);
  return in;
}

void DenseLayer::prepare_row(const Input& in, int i) const {
  prepare_row(in, i, in.a + static_cast<size_t>(i) * in.lda);
}

void DenseLayer::prepare_row(const Input& in, int i, const float* row) const {
  if (precision_ == Precision::bfloat16) convert_row_bf16(*bf16_kernels_, bf16_, in.bf16, i, row);
  if (precision_ == Precision::int8) quantize_row_int8(*int8_kernels_, int8_, in.int8, i, row);
}

DenseLayer::Input DenseLayer::prepare(int M, const float* A, int lda,
                                      AlignedBuffer& scratch) const {
  Input in;
  in.a = A;
  in.lda = lda;
  if (precision_ == Precision::bfloat16)
    in.bf16 = convert_rows_bf16(*bf16_kernels_, bf16_, M, A, lda, scratch);
  if (precision_ == Precision::int8)
    in.int8 = quantize_rows_int8(*int8_kernels_, int8_, M, A, lda, scratch);
  return in;
}

namespace {

// The activation a layer of this precision applies for `act`: low-precision layers evaluate GELU's
// erf as a rational function (kernels.h), whose error their rounded outputs do not see.
Activation epilogue_activation(Precision precision, Activation act) {
  if (precision != Precision::float32 && act == Activation::gelu_erf)
    return Activation::gelu_erf_rational;
  return act;
}

}  // namespace

void DenseLayer::run_input(const KernelTable& fp32, int M, const Input& in, float* C, int ldc,
                           bool with_bias, Activation act) const {
  act = epilogue_activation(precision_, act);
  switch (precision_) {
    case Precision::float32:
      linear(fp32, fp32_, M, in.a, in.lda, C, ldc, with_bias, act);
      break;
    case Precision::bfloat16:
      linear_bf16(*bf16_kernels_, bf16_, M, in.bf16, C, ldc, with_bias, act);
      break;
    case Precision::int8:
      linear_int8(*int8_kernels_, int8_, M, in.int8, C, ldc, with_bias, act);
      break;
  }
}

void DenseLayer::run_input_rounded(const KernelTable& fp32, const Bf16Kernels& round, int M,
                                   const Input& in, bf16* C, int ldc, bool with_bias) const {
  if (precision_ == Precision::float32)
    throw std::logic_error("run_input_rounded: a float32 layer has no low-precision product");
  const int N = out_features(), nr = panel_width();
  const int mr = precision_ == Precision::int8 ? int8_kernels_->mr : bf16_kernels_->mr;
  const std::vector<GemmBlock> blocks =
      gemm_blocks(M, ceil_div(N, nr), mr, nr, get_num_threads());
  parallel_for(static_cast<int>(blocks.size()), [&](int task) {
    const GemmBlock& b = blocks[task];
    const int n0 = b.p0 * nr, cols = std::min(N, b.p1 * nr) - n0, ld = (b.p1 - b.p0) * nr;
    // At most gemm_blocks' row block times its column block: ~130 KB, in L2.
    thread_local AlignedBuffer block;
    block.reserve(static_cast<size_t>(b.m1 - b.m0) * ld);
    run_block(fp32, in, b, block.data(), ld, with_bias ? bias() + n0 : nullptr, Activation::none);
    for (int i = b.m0; i < b.m1; ++i)
      round.convert_row(block.data() + static_cast<size_t>(i - b.m0) * ld, cols, cols,
                        C + static_cast<size_t>(i) * ldc + n0);
  });
}

namespace {

// Rows per task when a product runs in tasks of whole rows (run_rows), or 0 where such tasks
// would cost more than they save. Each task reads all of the layer's weights, so a task has at
// least kRowsPerWeightByte rows per byte of a weight: with fewer, a layer whose weights stay in
// L3 or DRAM (BERT-base's FFN: 2.4 MB in int8, 4.7 in bf16) is read that much more often
// (measured: bf16 BERT-base at 1x128 in 12-row tasks, 7% slower). And the busiest thread (the
// pool hands equal tasks out in turn) has at most 1/0.9 of an even share: three 8-row tiles on
// two threads would give one thread two thirds of the product. The most whole micro-tiles up to
// kWholeRowTask rows that satisfy both.
constexpr int kWholeRowTask = 32;  // its fp32 rows (up to 393 KB at 3072 columns) stay in L2
constexpr int kRowsPerWeightByte = 16;
// Rows per task of the pass over C otherwise.
constexpr int kPassRows = 16;

int whole_row_task_rows(int M, int mr, int threads, int weight_bytes) {
  const int fewest = kRowsPerWeightByte * weight_bytes;
  for (int rows = std::max(1, kWholeRowTask / mr) * mr; rows >= std::max(mr, fewest);
       rows -= mr) {
    const int tasks = ceil_div(M, rows);
    int busiest = 0;
    for (int t = 0; t < std::min(threads, tasks); ++t) {
      int load = 0;
      for (int task = t; task < tasks; task += threads) load += std::min(rows, M - task * rows);
      busiest = std::max(busiest, load);
    }
    if (10 * static_cast<int64_t>(M) >= 9 * static_cast<int64_t>(threads) * busiest) return rows;
  }
  return 0;
}

}  // namespace

void DenseLayer::run_rows(const KernelTable& fp32, int M, const Input& in, float* C, int ldc,
                          bool with_bias, Activation act, const RowConsumer& each_row) const {
  const int threads = get_num_threads();
  const int mr = precision_ == Precision::int8       ? int8_kernels_->mr
                 : precision_ == Precision::bfloat16 ? bf16_kernels_->mr
                                                     : 0;
  const int weight_bytes = precision_ == Precision::int8 ? 1 : 2;
  const int rows = mr > 0 ? whole_row_task_rows(M, mr, threads, weight_bytes) : 0;
  if (rows == 0) {
    run_input(fp32, M, in, C, ldc, with_bias, act);
    parallel_for(ceil_div(M, kPassRows), [&](int task) {
      for (int i = task * kPassRows; i < std::min(M, (task + 1) * kPassRows); ++i)
        each_row(i, C + static_cast<size_t>(i) * ldc);
    });
    return;
  }
  const int nr = panel_width(), panels = ceil_div(out_features(), nr), ld = panels * nr;
  parallel_for(ceil_div(M, rows), [&](int task) {
    const int m0 = task * rows, m1 = std::min(M, m0 + rows);
    thread_local AlignedBuffer block;
    block.reserve(static_cast<size_t>(m1 - m0) * ld);
    // One thread's blocking of the task's rows: each block's panels stream into L2 once and serve
    // all the task's row tiles.
    for (GemmBlock b : gemm_blocks(m1 - m0, panels, mr, nr, 1)) {
      float* c = block.data() + static_cast<size_t>(b.m0) * ld + b.p0 * nr;
      b.m0 += m0;
      b.m1 += m0;
      run_block(fp32, in, b, c, ld, with_bias ? bias() + b.p0 * nr : nullptr, act);
    }
    for (int i = m0; i < m1; ++i) each_row(i, block.data() + static_cast<size_t>(i - m0) * ld);
  });
}

int DenseLayer::panel_width() const {
  switch (precision_) {
    case Precision::bfloat16:
      return bf16_.nr;
    case Precision::int8:
      return int8_.nr;
    case Precision::float32:
      break;
  }
  return fp32_.nr;
}

void DenseLayer::run_block(const KernelTable& fp32, const Input& in, const GemmBlock& b, float* C,
                           int ldc, const float* bias, Activation act) const {
  act = epilogue_activation(precision_, act);
  switch (precision_) {
    case Precision::float32: {
      const int N = out_features(), nr = fp32_.nr;
      gemm_serial(fp32, b.m1 - b.m0, std::min(N, b.p1 * nr) - b.p0 * nr, in_features(),
                  in.a + static_cast<size_t>(b.m0) * in.lda, in.lda, fp32_.panels.data(),
                  ceil_div(N, nr), b.p0, C, ldc, bias, act);
      break;
    }
    case Precision::bfloat16:
      gemm_bf16_block(*bf16_kernels_, bf16_, in.bf16, b, C, ldc, bias, act);
      break;
    case Precision::int8:
      gemm_int8_block(*int8_kernels_, int8_, in.int8, b, C, ldc, bias, act);
      break;
  }
}

size_t DenseLayer::bytes() const {
  switch (precision_) {
    case Precision::float32:
      return fp32_.panels.bytes() + fp32_.bias.bytes();
    case Precision::bfloat16:
      return bf16_.panels.bytes() + bf16_.bias.bytes();
    case Precision::int8:
      return int8_.panels.bytes() + int8_.scales.bytes() + int8_.compensation.bytes() +
             int8_.bias.bytes();
  }
  return 0;
}

}  // namespace bertcpu
