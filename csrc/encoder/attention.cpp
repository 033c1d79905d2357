#include "encoder/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/thread_pool.h"
#include "kernels/gemm.h"

namespace bertcpu {

namespace {

// Query rows handled at once, at most: their scores (rows x length) stay in L2 up to length 512.
// The block is cut to whole micro-tiles (60 rows for 12-row tiles): a 64-row block ended in a
// 4-row tile that ran both products at a fraction of the speed (BERT-base attention, AVX-512, 1
// thread: 73 -> 86 GFLOP/s at length 512, 72 -> 83 at 128).
constexpr int kQueryBlock = 64;

}  // namespace

void multi_head_attention(const KernelTable& kt, const float* qkv, int ld_qkv, int hidden,
                          int heads, const SequenceLayout& layout, float* ctx, int ld_ctx,
                          const AttentionProbsOut& probs, std::vector<AttentionScratch>& scratch,
                          int threads) {
  const int d = hidden / heads;
  const int ld = ld_qkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int nr = kt.nr;
  const int query_block = std::max(1, kQueryBlock / kt.mr) * kt.mr;
  parallel_for(
      layout.batch() * heads,
      [&](int task) {
        const int b = task / heads, h = task % heads;
        const int length = layout.lengths[b], first = layout.offsets[b];
        AttentionScratch& s = scratch[current_worker()];
        s.packed_keys.reserve(packed_size(d, length, nr));
        s.packed_values.reserve(packed_size(length, d, nr));
        s.scores.reserve(static_cast<size_t>(query_block) * length);

        const float* q = qkv + static_cast<size_t>(first) * ld + h * d;
        const float* k = q + hidden;
        const float* v = q + 2 * hidden;
        // Keys packed as B = K^T (from K's rows), values as B = V: the GEMM's packed operand.
        kt.pack_b_nk(k, length, d, ld, s.packed_keys.data());
        pack_b_kn(v, length, d, ld, nr, s.packed_values.data());

        for (int i0 = 0; i0 < length; i0 += query_block) {
          const int rows = std::min(query_block, length - i0);
          float* scores = s.scores.data();
          gemm_serial(kt, rows, length, d, q + static_cast<size_t>(i0) * ld, ld,
                      s.packed_keys.data(), ceil_div(length, nr), 0, scores, length, nullptr,
                      Activation::none);
          for (int i = 0; i < rows; ++i) kt.softmax(scores + static_cast<size_t>(i) * length, length, scale);
          if (probs.data) {
            const size_t S = probs.padded_length;
            float* head_probs = probs.data + (static_cast<size_t>(b) * heads + h) * S * S;
            const int* cols = probs.columns + first;
            for (int i = 0; i < rows; ++i) {
              float* dst = head_probs + cols[i0 + i] * S;
              const float* src = scores + static_cast<size_t>(i) * length;
              for (int j = 0; j < length; ++j) dst[cols[j]] = src[j];
            }
          }
          gemm_serial(kt, rows, d, length, scores, length, s.packed_values.data(),
                      ceil_div(d, nr), 0, ctx + static_cast<size_t>(first + i0) * ld_ctx + h * d, ld_ctx, nullptr,
                      Activation::none);
        }
      },
      threads);
}

}  // namespace bertcpu
