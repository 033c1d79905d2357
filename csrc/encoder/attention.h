// Multi-head self-attention over unpadded sequences.
#pragma once

#include <vector>

#include "cpu/aligned_buffer.h"
#include "kernels/kernels.h"

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
};

// ctx[t, h*d:(h+1)*d] = softmax(q_h k_h^T / sqrt(d)) v_h within each sequence, where qkv rows are
// [q | k | v] of width 3 * hidden, ld_qkv floats apart (ctx rows ld_ctx apart). One task per
// (sequence, head), on up to `threads` threads with scratch[current_worker()] (scratch must hold
// `threads` entries).
void multi_head_attention(const KernelTable& kt, const float* qkv, int ld_qkv, int hidden,
                          int heads, const SequenceLayout& layout, float* ctx, int ld_ctx,
                          const AttentionProbsOut& probs, std::vector<AttentionScratch>& scratch,
                          int threads);

}  // namespace bertcpu
