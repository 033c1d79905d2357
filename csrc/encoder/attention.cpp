#include "encoder/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cpu/thread_pool.h"
#include "kernels/gemm.h"

namespace bertcpu {

namespace {

// Query rows handled at once, at most: their scores (rows x length) stay in L2 up to length 512.
// The block is cut to whole micro-tiles (60 rows for 12-row tiles): a 64-row block ended in a
// 4-row tile that ran both products at a fraction of the speed (BERT-base attention, AVX-512, 1
// thread: 73 -> 86 GFLOP/s at length 512, 72 -> 83 at 128).
constexpr int kQueryBlock = 64;

int query_block_rows(int mr) { return std::max(1, kQueryBlock / mr) * mr; }

int round_up(int n, int multiple) { return ceil_div(n, multiple) * multiple; }

template <class T>
T* as(AlignedBuffer& buffer) {
  return reinterpret_cast<T*>(buffer.data());
}

// Token rows per task of the bf16 conversion.
constexpr int kRowsPerTask = 16;

// One head of one sequence: q, k, v point at its first token's slices (rows ld floats apart),
// ctx at its first token's output slice. store_probs(i0, rows, scores, sums) sees each block's
// softmax numerators and their sums.
struct Head {
  const float *q, *k, *v;
  int ld, d, length;
  float scale;
  float* ctx;
  int ld_ctx;
};

// The same head in the workspace's bf16 copy: its first token's q, k and v (dp values each, zero
// past d; rows ld values apart).
struct Bf16Head {
  const bf16 *q, *k, *v;
  int ld, dp;
};

// Each score row's softmax numerators in place, and their sums.
void exponentiate(const KernelTable& kt, float* scores, int rows, int length, float scale,
                  float* sums) {
  for (int i = 0; i < rows; ++i)
    sums[i] = kt.softmax_numerators(scores + static_cast<size_t>(i) * length, length, scale);
}

// The softmax's division, on the output rows (d values, ld apart): out * (1 / sum), as a softmax
// multiplies its numerators.
void divide_rows(float* out, int ld, int rows, int d, const float* sums) {
  for (int i = 0; i < rows; ++i) {
    const float inv = 1.0f / sums[i];
    float* row = out + static_cast<size_t>(i) * ld;
    for (size_t j = 0; j < static_cast<size_t>(d); ++j) row[j] *= inv;
  }
}

template <class StoreProbs>
void attend_fp32(const KernelTable& kt, const Head& h, AttentionScratch& s,
                 const StoreProbs& store_probs) {
  const int nr = kt.nr, length = h.length, d = h.d;
  const int block = query_block_rows(kt.mr);
  s.packed_keys.reserve(packed_size(d, length, nr));
  s.packed_values.reserve(packed_size(length, d, nr));
  s.scores.reserve(static_cast<size_t>(block) * length);
  s.row_sums.reserve(block);
  // Keys packed as B = K^T (from K's rows), values as B = V: the GEMM's packed operand.
  kt.pack_b_nk(h.k, length, d, h.ld, s.packed_keys.data());
  pack_b_kn(h.v, length, d, h.ld, nr, s.packed_values.data());
  for (int i0 = 0; i0 < length; i0 += block) {
    const int rows = std::min(block, length - i0);
    float *scores = s.scores.data(), *sums = s.row_sums.data();
    float* ctx = h.ctx + static_cast<size_t>(i0) * h.ld_ctx;
    gemm_serial(kt, rows, length, d, h.q + static_cast<size_t>(i0) * h.ld, h.ld,
                s.packed_keys.data(), ceil_div(length, nr), 0, scores, length, nullptr,
                Activation::none);
    exponentiate(kt, scores, rows, length, h.scale, sums);
    store_probs(i0, rows, scores, sums);
    gemm_serial(kt, rows, d, length, scores, length, s.packed_values.data(), ceil_div(d, nr), 0,
                ctx, h.ld_ctx, nullptr, Activation::none);
    divide_rows(ctx, h.ld_ctx, rows, d, sums);
  }
}

// Values (length rows of d bf16, ld apart; zeros from row `length` to lp) as the bf16 kernels' B:
// pairs of keys interleaved per column, in K chunks of kGemmKc keys, each panel-major as
// gemm_lowp.h packs weights.
void pack_value_pairs(const bf16* v, int ld, int length, int lp, int d, int nr, uint32_t* out) {
  const int panels = ceil_div(d, nr);
  for (int k0 = 0; k0 < lp; k0 += kGemmKc) {
    const int kc = std::min(kGemmKc, lp - k0);
    uint32_t* chunk = out + static_cast<size_t>(k0 / 2) * panels * nr;
    for (int pair = 0; pair < kc / 2; ++pair) {
      const int key = k0 + 2 * pair;
      const int present = std::clamp(length - key, 0, 2);  // keys of the pair below length
      for (int p = 0; p < panels; ++p) {
        // Pointers and size_t counts: with int indices under -fwrapv GCC leaves these loops scalar.
        const bf16* __restrict even = v + static_cast<size_t>(key) * ld + p * nr;
        const bf16* __restrict odd = even + ld;
        uint32_t* __restrict dst = chunk + (static_cast<size_t>(p) * (kc / 2) + pair) * nr;
        const size_t cols = std::min(nr, d - p * nr);
        if (present == 2)
          for (size_t j = 0; j < cols; ++j) dst[j] = even[j] | static_cast<uint32_t>(odd[j]) << 16;
        else if (present == 1)
          for (size_t j = 0; j < cols; ++j) dst[j] = even[j];
        else
          std::fill(dst, dst + cols, 0u);
        std::fill(dst + cols, dst + nr, 0u);
      }
    }
  }
}

// The bf16 products, on the head's bf16 copy. Keys: packed by the fp32 table's key packer as
// [length][dp / 2] 32-bit elements: a bf16 pair (k, k + 1) of one key is one element, and the
// packer only moves elements, so its panels are the bf16 kernels' pair rows (same nr). Queries:
// read in place as the A operand. Probabilities: the fp32 softmax numerators, rounded.
template <class StoreProbs>
void attend_bf16(const KernelTable& kt, const Bf16Kernels& bt, const Head& h, const Bf16Head& hb,
                 AttentionScratch& s, const StoreProbs& store_probs) {
  const int nr = bt.nr, mr = bt.mr, length = h.length, d = h.d, dp = hb.dp;
  const int lp = round_up(length, k_alignment(bt));
  const int block = query_block_rows(mr);
  const int key_panels = ceil_div(length, nr), value_panels = ceil_div(d, nr);
  // Rows of A a micro-kernel may read past the block (AMX loads 16 at a time).
  const size_t a_rows = static_cast<size_t>(block) + kLowpRowAlign;
  s.rows.reserve((a_rows * lp + 1) / 2);
  s.packed_keys.reserve(static_cast<size_t>(key_panels) * nr * dp / 2);
  s.packed_values.reserve(static_cast<size_t>(value_panels) * nr * lp / 2);
  s.scores.reserve(static_cast<size_t>(block) * length);
  s.row_sums.reserve(block);
  bf16* probs = as<bf16>(s.rows);

  kt.pack_b_nk(reinterpret_cast<const float*>(hb.k), length, dp / 2, hb.ld / 2,
               s.packed_keys.data());
  uint32_t* values = as<uint32_t>(s.packed_values);
  pack_value_pairs(hb.v, hb.ld, length, lp, d, nr, values);

  const bf16* keys = reinterpret_cast<const bf16*>(s.packed_keys.data());
  const bf16* packed_values = reinterpret_cast<const bf16*>(values);
  if (bt.begin_block) bt.begin_block();
  for (int i0 = 0; i0 < length; i0 += block) {
    const int n_rows = std::min(block, length - i0);
    float *scores = s.scores.data(), *sums = s.row_sums.data();
    const bf16* queries = hb.q + static_cast<size_t>(i0) * hb.ld;
    for (int i = 0; i < n_rows; i += mr)
      for (int p = 0; p < key_panels; ++p)
        bt.gemm_micro(dp, queries + static_cast<size_t>(i) * hb.ld, hb.ld,
                      keys + static_cast<size_t>(p) * dp * nr,
                      scores + static_cast<size_t>(i) * length + p * nr, length,
                      std::min(mr, n_rows - i), std::min(nr, length - p * nr), 0, nullptr,
                      Activation::none);
    exponentiate(kt, scores, n_rows, length, h.scale, sums);
    for (int i = 0; i < n_rows; ++i)
      bt.convert_row(scores + static_cast<size_t>(i) * length, length, lp,
                     probs + static_cast<size_t>(i) * lp);
    store_probs(i0, n_rows, scores, sums);
    float* ctx = h.ctx + static_cast<size_t>(i0) * h.ld_ctx;
    for (int k0 = 0; k0 < lp; k0 += kGemmKc) {
      const int kc = std::min(kGemmKc, lp - k0);
      const bf16* chunk = packed_values + static_cast<size_t>(k0) * value_panels * nr;
      for (int i = 0; i < n_rows; i += mr)
        for (int p = 0; p < value_panels; ++p)
          bt.gemm_micro(kc, probs + static_cast<size_t>(i) * lp + k0, lp,
                        chunk + static_cast<size_t>(p) * kc * nr,
                        ctx + static_cast<size_t>(i) * h.ld_ctx + p * nr, h.ld_ctx,
                        std::min(mr, n_rows - i), std::min(nr, d - p * nr),
                        k0 > 0 ? kGemmAccumulate : 0, nullptr, Activation::none);
    }
    divide_rows(ctx, h.ld_ctx, n_rows, d, sums);
  }
  if (bt.end_block) bt.end_block();
}

// Every token's q, k and v rounded to bf16 into rows of ld values: head h's part (q, k, v) at
// (part * heads + h) * dp, zero-padded from d to dp.
void convert_qkv(const Bf16Kernels& bt, const float* qkv, int ld_qkv, int tokens, int hidden,
                 int heads, int dp, bf16* out, int ld, int threads) {
  const int d = hidden / heads;
  parallel_for(
      ceil_div(tokens, kRowsPerTask),
      [&](int task) {
        const int end = std::min(tokens, (task + 1) * kRowsPerTask);
        for (int t = task * kRowsPerTask; t < end; ++t) {
          const float* row = qkv + static_cast<size_t>(t) * ld_qkv;
          bf16* dst = out + static_cast<size_t>(t) * ld;
          if (dp == d) {
            bt.convert_row(row, 3 * hidden, ld, dst);
            continue;
          }
          for (int slice = 0; slice < 3 * heads; ++slice)
            bt.convert_row(row + slice * d, d, dp, dst + slice * dp);
        }
      },
      threads);
}

// The bf16 rows' layout: head size padded to the table's K alignment, rows padded to 32 values.
struct Bf16RowLayout {
  int dp, ld;
};

Bf16RowLayout bf16_row_layout(const Bf16Kernels& bt, int hidden, int heads) {
  const int dp = round_up(hidden / heads, k_alignment(bt));
  return {dp, round_up(3 * heads * dp, 32)};
}

// Whether attention runs its products on bf16 table bt (null: none) beside kt, with head size dp
// padded: the bf16 keys are one strip of the fp32 packer, at most kGemmKc pairs.
bool runs_in_bf16(const KernelTable& kt, const Bf16Kernels* bt, int dp) {
  return bt && attention_runs_on(*bt, kt) && dp <= 2 * kGemmKc;
}

// The workspace's bf16 rows for `tokens` tokens, and the kLowpRowAlign zero rows after them.
bf16* reserve_bf16_rows(AttentionWorkspace& workspace, int tokens, int ld) {
  workspace.qkv_bf16.reserve((static_cast<size_t>(tokens + kLowpRowAlign) * ld + 1) / 2);
  bf16* rows = as<bf16>(workspace.qkv_bf16);
  std::fill(rows + static_cast<size_t>(tokens) * ld,
            rows + static_cast<size_t>(tokens + kLowpRowAlign) * ld, bf16{0});
  return rows;
}

}  // namespace

bf16* attention_bf16_rows(AttentionWorkspace& workspace, const KernelTable& kt,
                          const Bf16Kernels* bf16_table, int tokens, int hidden, int heads,
                          int* ld) {
  if (!bf16_table) return nullptr;
  const Bf16RowLayout layout = bf16_row_layout(*bf16_table, hidden, heads);
  if (!runs_in_bf16(kt, bf16_table, layout.dp) || layout.dp != hidden / heads) return nullptr;
  *ld = layout.ld;
  return reserve_bf16_rows(workspace, tokens, layout.ld);
}

size_t attention_bf16_floats_per_token(const Bf16Kernels* bf16_table, int hidden, int heads) {
  return bf16_table ? static_cast<size_t>(bf16_row_layout(*bf16_table, hidden, heads).ld) / 2 : 0;
}

bool attention_runs_on(const Bf16Kernels& bf16, const KernelTable& kt) {
  return bf16.kgroup == 2 && bf16.a_pair_chunk == 0 && bf16.nr == kt.nr;
}

void multi_head_attention(const KernelTable& kt, const Bf16Kernels* bf16_table, const float* qkv,
                          int ld_qkv, int hidden, int heads, const SequenceLayout& layout,
                          float* ctx, int ld_ctx, const AttentionProbsOut& probs,
                          AttentionWorkspace& workspace, int threads) {
  const int d = hidden / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  if (static_cast<int>(workspace.threads.size()) < threads) workspace.threads.resize(threads);
  const Bf16RowLayout row_layout = bf16_table ? bf16_row_layout(*bf16_table, hidden, heads)
                                              : Bf16RowLayout{d, 0};
  const int dp = row_layout.dp, ld_bf16 = row_layout.ld;
  const bool in_bf16 = runs_in_bf16(kt, bf16_table, dp);
  if (!qkv && !(in_bf16 && dp == d))
    throw std::logic_error("multi_head_attention: no fp32 q/k/v, and no bf16 attention to read");
  const bf16* qkv_bf16 = as<bf16>(workspace.qkv_bf16);
  if (in_bf16 && qkv && layout.batch() > 0) {
    const int tokens = layout.offsets.back() + layout.lengths.back();
    bf16* out = reserve_bf16_rows(workspace, tokens, ld_bf16);
    convert_qkv(*bf16_table, qkv, ld_qkv, tokens, hidden, heads, dp, out, ld_bf16, threads);
    qkv_bf16 = out;
  }
  parallel_for(
      layout.batch() * heads,
      [&](int task) {
        const int b = task / heads, h = task % heads;
        const int length = layout.lengths[b], first = layout.offsets[b];
        // The fp32 q, k, v (null when the caller gave bf16 rows only).
        const float* q = qkv ? qkv + static_cast<size_t>(first) * ld_qkv + h * d : nullptr;
        const Head head{q,      q ? q + hidden : nullptr, q ? q + 2 * hidden : nullptr,
                        ld_qkv, d,                        length,
                        scale,  ctx + static_cast<size_t>(first) * ld_ctx + h * d,
                        ld_ctx};
        auto store_probs = [&](int i0, int rows, const float* scores, const float* sums) {
          if (!probs.data) return;
          const size_t S = probs.padded_length;
          float* head_probs = probs.data + (static_cast<size_t>(b) * heads + h) * S * S;
          const int* cols = probs.columns + first;
          for (int i = 0; i < rows; ++i) {
            float* dst = head_probs + cols[i0 + i] * S;
            const float* src = scores + static_cast<size_t>(i) * length;
            const float inv = 1.0f / sums[i];
            for (int j = 0; j < length; ++j) dst[cols[j]] = src[j] * inv;
          }
        };
        AttentionScratch& s = workspace.threads[current_worker()];
        if (in_bf16) {
          const bf16* first_q =
              qkv_bf16 + static_cast<size_t>(first) * ld_bf16 + static_cast<size_t>(h) * dp;
          const size_t part = static_cast<size_t>(heads) * dp;
          attend_bf16(kt, *bf16_table, head,
                      Bf16Head{first_q, first_q + part, first_q + 2 * part, ld_bf16, dp}, s,
                      store_probs);
        } else {
          attend_fp32(kt, head, s, store_probs);
        }
      },
      threads);
}

}  // namespace bertcpu
