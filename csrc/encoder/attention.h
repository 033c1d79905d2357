// Multi-head self-attention over unpadded sequences.
#pragma once

#include <vector>

#include "cpu/aligned_buffer.h"
#include "kernels/kernels.h"
#include "kernels/lowp_kernels.h"

namespace bertcpu {

// Where each sequence's real tokens sit: tokens of sequence b are rows [offsets[b], offsets[b] +
// lengths[b]) of the token-major activations.
struct SequenceLayout {
  std::vector<int> offsets, lengths;
  int max_length = 0;
  int batch() const { return static_cast<int>(offsets.size()); }
};

// Optional copy of the attention probabilities into a padded [B, heads, S, S] array; `columns`
// gives each token's column in the padded input. Entries of masked positions are left untouched.
struct AttentionProbsOut {
  float* data = nullptr;
  int padded_length = 0;
  const int* columns = nullptr;
};

// Per-thread scratch memory of attention, grown on demand.
struct AttentionScratch {
  AlignedBuffer packed_keys, packed_values, scores;
  AlignedBuffer row_sums;  // each score row's softmax denominator
  AlignedBuffer rows;      // bf16 attention: the probabilities rounded to bf16
};

// Attention's scratch memory, grown on demand: the threads' own, and the bf16 attention's copy of
// every token's q, k and v rounded to bf16 (made once per call: one conversion per token row, not
// three per token and head; MiniLM-class heads of 32 values spent more in the calls than in the
// conversion).
struct AttentionWorkspace {
  std::vector<AttentionScratch> threads;
  AlignedBuffer qkv_bf16;
};

// Where the Q/K/V product of a bfloat16 / int8 model can write attention's bf16 input itself:
// rows of *ld bf16 values in the workspace (grown for `tokens` rows), each token's [q | k | v] laid
// out as in the fp32 rows, which multi_head_attention reads when given qkv = null. Null when
// attention on these tables would not read such rows (fp32 attention, or a head size that the
// bf16 table's K alignment pads).
bf16* attention_bf16_rows(AttentionWorkspace& workspace, const KernelTable& kt,
                          const Bf16Kernels* bf16_table, int tokens, int hidden, int heads,
                          int* ld);

// Floats per token of the workspace's bf16 rows (0 without a bf16 table): a model's scratch budget.
size_t attention_bf16_floats_per_token(const Bf16Kernels* bf16_table, int hidden, int heads);

// Whether multi_head_attention can run its two products on bf16 table `bf16` beside fp32 table
// `kt`: pairs of K values (not BFMMLA's quads), rows one after another, and the fp32 table's panel
// width (whose key packer it borrows).
bool attention_runs_on(const Bf16Kernels& bf16, const KernelTable& kt);

// ctx[t, h*d:(h+1)*d] = softmax(q_h k_h^T / sqrt(d)) v_h within each sequence, where qkv rows are
// [q | k | v] of width 3 * hidden, ld_qkv floats apart (ctx rows ld_ctx apart), or null when the
// caller wrote them rounded to attention_bf16_rows() instead. One task per
// (sequence, head), on up to `threads` threads with workspace.threads[current_worker()] (grown to
// `threads` entries here). Each probability row is divided by its sum after the product with V,
// on the row's d outputs rather than its length scores.
//
// bf16_table: null, or a table attention_runs_on() accepts, for the products Q K^T and P V:
// queries, keys, values and the softmax numerators are rounded to bf16 and the products summed in
// fp32 (twice the products per instruction of fp32 FMA; the score scaling and the softmax stay
// fp32). What a bfloat16 or int8 model uses: at length 512 the fp32 products took ~25% of an int8
// BERT-base.
void multi_head_attention(const KernelTable& kt, const Bf16Kernels* bf16_table, const float* qkv,
                          int ld_qkv, int hidden, int heads, const SequenceLayout& layout,
                          float* ctx, int ld_ctx, const AttentionProbsOut& probs,
                          AttentionWorkspace& workspace, int threads);

}  // namespace bertcpu
