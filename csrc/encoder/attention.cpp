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

int query_block_rows(int mr) { return std::max(1, kQueryBlock / mr) * mr; }

int round_up(int n, int multiple) { return ceil_div(n, multiple) * multiple; }

template <class T>
T* as(AlignedBuffer& buffer) {
  return reinterpret_cast<T*>(buffer.data());
}

// One head of one sequence: q, k, v point at its first token's slices (rows ld floats apart),
// ctx at its first token's output slice. store_probs(i0, rows, scores) sees each block's
// probabilities.
struct Head {
  const float *q, *k, *v;
  int ld, d, length;
  float scale;
  float* ctx;
  int ld_ctx;
};

template <class StoreProbs>
void attend_fp32(const KernelTable& kt, const Head& h, AttentionScratch& s,
                 const StoreProbs& store_probs) {
  const int nr = kt.nr, length = h.length, d = h.d;
  const int block = query_block_rows(kt.mr);
  s.packed_keys.reserve(packed_size(d, length, nr));
  s.packed_values.reserve(packed_size(length, d, nr));
  s.scores.reserve(static_cast<size_t>(block) * length);
  // Keys packed as B = K^T (from K's rows), values as B = V: the GEMM's packed operand.
  kt.pack_b_nk(h.k, length, d, h.ld, s.packed_keys.data());
  pack_b_kn(h.v, length, d, h.ld, nr, s.packed_values.data());
  for (int i0 = 0; i0 < length; i0 += block) {
    const int rows = std::min(block, length - i0);
    float* scores = s.scores.data();
    gemm_serial(kt, rows, length, d, h.q + static_cast<size_t>(i0) * h.ld, h.ld,
                s.packed_keys.data(), ceil_div(length, nr), 0, scores, length, nullptr,
                Activation::none);
    for (int i = 0; i < rows; ++i)
      kt.softmax(scores + static_cast<size_t>(i) * length, length, h.scale);
    store_probs(i0, rows, scores);
    gemm_serial(kt, rows, d, length, scores, length, s.packed_values.data(), ceil_div(d, nr), 0,
                h.ctx + static_cast<size_t>(i0) * h.ld_ctx, h.ld_ctx, nullptr, Activation::none);
  }
}

// The bf16 products. Keys: rounded row by row (head dim zero-padded to dp), then packed by the
// fp32 table's key packer as [length][dp / 2] 32-bit elements: a bf16 pair (k, k + 1) of one key
// is one element, and the packer only moves elements, so its panels are the bf16 kernels' pair
// rows (same nr). Values: pairs of keys interleaved per column into K chunks of kGemmKc keys,
// each panel-major as gemm_lowp.h packs weights. Probabilities are rounded after the fp32 softmax.
template <class StoreProbs>
void attend_bf16(const KernelTable& kt, const Bf16Kernels& bt, const Head& h, AttentionScratch& s,
                 const StoreProbs& store_probs) {
  const int nr = bt.nr, mr = bt.mr, length = h.length, d = h.d;
  const int align = k_alignment(bt);
  const int dp = round_up(d, align), lp = round_up(length, align);
  const int block = query_block_rows(mr);
  const int key_panels = ceil_div(length, nr), value_panels = ceil_div(d, nr);
  // Rows of A a micro-kernel may read past the block (AMX loads 16 at a time).
  const size_t a_rows = static_cast<size_t>(block) + kLowpRowAlign;
  const size_t row_values = std::max({static_cast<size_t>(length) * dp,
                                      static_cast<size_t>(lp) * d,
                                      a_rows * std::max(dp, lp)});
  s.rows.reserve((row_values + 1) / 2);
  s.packed_keys.reserve(static_cast<size_t>(key_panels) * nr * dp / 2);
  s.packed_values.reserve(static_cast<size_t>(value_panels) * nr * lp / 2);
  s.scores.reserve(static_cast<size_t>(block) * length);
  bf16* rows = as<bf16>(s.rows);

  for (int j = 0; j < length; ++j)
    bt.convert_row(h.k + static_cast<size_t>(j) * h.ld, d, dp, rows + static_cast<size_t>(j) * dp);
  kt.pack_b_nk(reinterpret_cast<const float*>(rows), length, dp / 2, dp / 2, s.packed_keys.data());

  for (int j = 0; j < length; ++j)
    bt.convert_row(h.v + static_cast<size_t>(j) * h.ld, d, d, rows + static_cast<size_t>(j) * d);
  std::fill(rows + static_cast<size_t>(length) * d, rows + static_cast<size_t>(lp) * d, bf16{0});
  uint32_t* values = as<uint32_t>(s.packed_values);
  for (int k0 = 0; k0 < lp; k0 += kGemmKc) {
    const int kc = std::min(kGemmKc, lp - k0);
    uint32_t* chunk = values + static_cast<size_t>(k0 / 2) * value_panels * nr;
    for (int pair = 0; pair < kc / 2; ++pair) {
      const bf16* even = rows + static_cast<size_t>(k0 + 2 * pair) * d;
      const bf16* odd = even + d;
      for (int p = 0; p < value_panels; ++p) {
        uint32_t* out = chunk + (static_cast<size_t>(p) * (kc / 2) + pair) * nr;
        const int cols = std::min(nr, d - p * nr);
        for (int j = 0; j < cols; ++j)
          out[j] = even[p * nr + j] | static_cast<uint32_t>(odd[p * nr + j]) << 16;
        std::fill(out + cols, out + nr, 0u);
      }
    }
  }

  const bf16* keys = reinterpret_cast<const bf16*>(s.packed_keys.data());
  const bf16* packed_values = reinterpret_cast<const bf16*>(values);
  if (bt.begin_block) bt.begin_block();
  for (int i0 = 0; i0 < length; i0 += block) {
    const int n_rows = std::min(block, length - i0);
    float* scores = s.scores.data();
    for (int i = 0; i < n_rows; ++i)
      bt.convert_row(h.q + static_cast<size_t>(i0 + i) * h.ld, d, dp,
                     rows + static_cast<size_t>(i) * dp);
    for (int i = 0; i < n_rows; i += mr)
      for (int p = 0; p < key_panels; ++p)
        bt.gemm_micro(dp, rows + static_cast<size_t>(i) * dp, dp,
                      keys + static_cast<size_t>(p) * dp * nr,
                      scores + static_cast<size_t>(i) * length + p * nr, length,
                      std::min(mr, n_rows - i), std::min(nr, length - p * nr), 0, nullptr,
                      Activation::none);
    for (int i = 0; i < n_rows; ++i) {
      float* row = scores + static_cast<size_t>(i) * length;
      kt.softmax(row, length, h.scale);
      bt.convert_row(row, length, lp, rows + static_cast<size_t>(i) * lp);
    }
    store_probs(i0, n_rows, scores);
    float* ctx = h.ctx + static_cast<size_t>(i0) * h.ld_ctx;
    for (int k0 = 0; k0 < lp; k0 += kGemmKc) {
      const int kc = std::min(kGemmKc, lp - k0);
      const bf16* chunk = packed_values + static_cast<size_t>(k0) * value_panels * nr;
      for (int i = 0; i < n_rows; i += mr)
        for (int p = 0; p < value_panels; ++p)
          bt.gemm_micro(kc, rows + static_cast<size_t>(i) * lp + k0, lp,
                        chunk + static_cast<size_t>(p) * kc * nr,
                        ctx + static_cast<size_t>(i) * h.ld_ctx + p * nr, h.ld_ctx,
                        std::min(mr, n_rows - i), std::min(nr, d - p * nr),
                        k0 > 0 ? kGemmAccumulate : 0, nullptr, Activation::none);
    }
  }
  if (bt.end_block) bt.end_block();
}

}  // namespace

bool attention_runs_on(const Bf16Kernels& bf16, const KernelTable& kt) {
  return bf16.kgroup == 2 && bf16.a_pair_chunk == 0 && bf16.nr == kt.nr;
}

void multi_head_attention(const KernelTable& kt, const Bf16Kernels* bf16, const float* qkv,
                          int ld_qkv, int hidden, int heads, const SequenceLayout& layout,
                          float* ctx, int ld_ctx, const AttentionProbsOut& probs,
                          std::vector<AttentionScratch>& scratch, int threads) {
  const int d = hidden / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // The bf16 keys are one strip of the fp32 packer: at most kGemmKc pairs.
  const bool in_bf16 = bf16 && attention_runs_on(*bf16, kt) &&
                       round_up(d, k_alignment(*bf16)) <= 2 * kGemmKc;
  parallel_for(
      layout.batch() * heads,
      [&](int task) {
        const int b = task / heads, h = task % heads;
        const int length = layout.lengths[b], first = layout.offsets[b];
        const float* q = qkv + static_cast<size_t>(first) * ld_qkv + h * d;
        const Head head{q,      q + hidden, q + 2 * hidden,
                        ld_qkv, d,          length,
                        scale,  ctx + static_cast<size_t>(first) * ld_ctx + h * d,
                        ld_ctx};
        auto store_probs = [&](int i0, int rows, const float* scores) {
          if (!probs.data) return;
          const size_t S = probs.padded_length;
          float* head_probs = probs.data + (static_cast<size_t>(b) * heads + h) * S * S;
          const int* cols = probs.columns + first;
          for (int i = 0; i < rows; ++i) {
            float* dst = head_probs + cols[i0 + i] * S;
            const float* src = scores + static_cast<size_t>(i) * length;
            for (int j = 0; j < length; ++j) dst[cols[j]] = src[j];
          }
        };
        AttentionScratch& s = scratch[current_worker()];
        if (in_bf16)
          attend_bf16(kt, *bf16, head, s, store_probs);
        else
          attend_fp32(kt, head, s, store_probs);
      },
      threads);
}

}  // namespace bertcpu
