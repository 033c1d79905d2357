// The masked-language-model head of BERT (transformers' BertOnlyMLMHead): a transform (dense +
// activation + LayerNorm) and the vocabulary projection (decoder [vocab x hidden] + bias), over
// the encoder's real tokens.
//
// The projection is the largest product of the model (vocab x hidden per token). Its weight is
// packed once, like every dense layer, in the model's precision. Two ways out:
// - logits(): [rows, vocab] for the rows asked for (fill-mask reads the masked positions only);
// - pool(): SPLADE's sparse vector per sequence, act(logits) reduced over the sequence's tokens,
//   where act is log(1 + relu(x)) (applied `log_steps` times: 2 is OpenSearch's log1p_relu). The
//   [tokens, vocab] logits never exist: each task multiplies a block of whole sequences by one
//   panel of the decoder (in the head's precision: the rows are converted or quantized once for all
//   tasks) into a tile that stays in L1, and the epilogue reduces that tile into the pooled
//   vectors. For "max" the reduction is a plain column max, and act (monotone) and the bias
//   (constant per column) are applied once per pooled value.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "encoder/dense.h"

namespace bertcpu {

enum class VocabPooling { max = 0, sum = 1 };

class VocabHead {
 public:
  // act: the transform's activation (config.hidden_act). A bfloat16 / int8 head runs the
  // transform and the decoder on the low-precision kernels of dense_isa.
  VocabHead(int hidden, int vocab, Activation act, float layer_norm_eps, Isa isa,
            Precision precision, Isa dense_isa);

  int hidden() const { return hidden_; }
  int vocab() const { return vocab_; }
  Isa isa() const { return kt_.isa; }
  Precision precision() const { return kernels_.precision; }
  Isa dense_isa() const { return kernels_.dense_isa(); }

  // The tensors set_weight takes, names relative to transformers' `cls.predictions.`:
  // transform.dense.{weight,bias}, transform.LayerNorm.{weight,bias}, decoder.weight, bias.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected_weights() const;
  // Throws std::invalid_argument for an unknown name or a wrong shape.
  void set_weight(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  // Throws std::invalid_argument naming a tensor never set; converts a low-precision head.
  void finalize();
  size_t packed_bytes() const;

  // out[r] = decoder(transform(hidden[r])) + bias for `rows` rows of `hidden` floats, ld apart.
  // out: [rows, vocab]. Thread-safe (the weights are read-only, scratch is per call).
  void logits(const float* hidden, int rows, int ld, float* out) const;

  // The padded encoder output [batch, seq, hidden] with its 0/1 mask [batch, seq] ->
  // out[b] = reduce over the real tokens t of b of act(logits(t)), [batch, vocab].
  void pool(const float* hidden, const int64_t* mask, int batch, int seq, VocabPooling pooling,
            int log_steps, float* out) const;

 private:
  // x (rows x hidden, ld apart) -> y = LayerNorm(act(x W^T + b)), same layout.
  void transform(const float* x, int rows, int ld, float* y, AlignedBuffer& scratch) const;
  void pool_fused(const float* y, int ld, const std::vector<int>& offsets,
                  const std::vector<int>& lengths, VocabPooling pooling, int log_steps,
                  float* out) const;

  int hidden_, vocab_;
  Activation act_;
  float eps_;
  const KernelTable& kt_;
  ModelKernels kernels_;
  DenseLayer transform_, decoder_;
  AlignedBuffer ln_gamma_, ln_beta_;
  std::vector<std::string> missing_;
};

}  // namespace bertcpu
