#include "kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "cpu/thread_pool.h"

namespace bertcpu {

namespace {

// Rows of A one task covers: its KC slice (128 KiB) and the C block fit in L2 together.
constexpr int kRowBlock = 128;
// Columns one task covers at most.
constexpr int kColBlock = 256;
// Up to this many row tiles of A, a strip's arithmetic is too short to hide its load from memory:
// the product walks B in memory order.
constexpr int kPrefetchMaxRowTiles = 4;

}  // namespace

// The packed row of B holding (k, panel p): nr floats.
static inline float* packed_row(float* out, int K, int panels, int nr, int k, int p) {
  const int k0 = k - k % kGemmKc;
  return out + strip_offset(K, panels, nr, k0, p) + static_cast<size_t>(k - k0) * nr;
}

void pack_b_nk(const float* w, int N, int K, int ldw, int nr, float* out) {
  const int panels = ceil_div(N, nr);
  for (int p = 0; p < panels; ++p) {
    const int cols = std::min(nr, N - p * nr);
    for (int k = 0; k < K; ++k) {
      float* row = packed_row(out, K, panels, nr, k, p);
      for (int j = 0; j < cols; ++j) row[j] = w[static_cast<size_t>(p * nr + j) * ldw + k];
      for (int j = cols; j < nr; ++j) row[j] = 0.0f;
    }
  }
}

void pack_b_kn(const float* b, int K, int N, int ldb, int nr, float* out) {
  const int panels = ceil_div(N, nr);
  for (int k = 0; k < K; ++k) {
    for (int p = 0; p < panels; ++p) {
      float* row = packed_row(out, K, panels, nr, k, p);
      const int cols = std::min(nr, N - p * nr);
      std::memcpy(row, b + static_cast<size_t>(k) * ldb + p * nr, cols * sizeof(float));
      for (int j = cols; j < nr; ++j) row[j] = 0.0f;
    }
  }
}

void PackedLinear::init(int panel_width, int out, int in) {
  in_features = in;
  out_features = out;
  nr = panel_width;
  bias.resize(static_cast<size_t>(ceil_div(out, nr)) * nr);
}

void PackedLinear::pack_weight(const float* weight) {
  panels.resize(packed_size(in_features, out_features, nr));
  pack_b_nk(weight, out_features, in_features, in_features, nr, panels.data());
}

void PackedLinear::set_bias(const float* values) {
  std::memcpy(bias.data(), values, out_features * sizeof(float));
}

void PackedLinear::unpack_weight(float* weight) const {
  const int count = ceil_div(out_features, nr);
  float* packed = const_cast<float*>(panels.data());
  for (int n = 0; n < out_features; ++n)
    for (int k = 0; k < in_features; ++k)
      weight[static_cast<size_t>(n) * in_features + k] =
          packed_row(packed, in_features, count, nr, k, n / nr)[n % nr];
}

void gemm_serial(const KernelTable& kt, int M, int N, int K, const float* A, int lda,
                 const float* Bp, int panels_total, int p0, float* C, int ldc, const float* bias,
                 Activation act) {
  const int nr = kt.nr, mr = kt.mr;
  const int panels = ceil_div(N, nr);
  const int chunks = ceil_div(K, kGemmKc);
  // Few rows of A: too little arithmetic per strip to hide streaming B from memory. Such products
  // walk B in memory order, panel by panel and strip after strip. With more rows the K chunk is
  // the outer loop so that A's slice of it stays in L2 across the panels. Either way the first row
  // tile prefetches the strip of the next step (measured 2% faster at 128 rows, more at 16).
  const bool streaming = M <= kPrefetchMaxRowTiles * mr;
  auto strip_at = [&](int step) {
    const int p = streaming ? step / chunks : step % panels;
    const int k0 = (streaming ? step % chunks : step / panels) * kGemmKc;
    return std::make_pair(p, k0);
  };
  for (int step = 0; step < panels * chunks; ++step) {
    const auto [p, k0] = strip_at(step);
    const int kc = std::min(kGemmKc, K - k0);
    const bool last = k0 + kc == K;
    const float* strip = Bp + strip_offset(K, panels_total, nr, k0, p0 + p);
    const float* next = nullptr;
    if (step + 1 < panels * chunks) {
      const auto [next_p, next_k0] = strip_at(step + 1);
      next = Bp + strip_offset(K, panels_total, nr, next_k0, p0 + next_p);
    }
    const int flags = k0 > 0 ? kGemmAccumulate : 0;
    const int n = std::min(nr, N - p * nr);
    const float* panel_bias = (last && bias) ? bias + p * nr : nullptr;
    const Activation panel_act = last ? act : Activation::none;
    for (int i = 0; i < M; i += mr) {
      kt.gemm_micro(kc, A + static_cast<size_t>(i) * lda + k0, lda, strip,
                    C + static_cast<size_t>(i) * ldc + p * nr, ldc, std::min(mr, M - i), n, flags,
                    panel_bias, panel_act, i == 0 ? next : nullptr);
    }
  }
}

std::vector<GemmBlock> gemm_blocks(int M, int panels, int mr, int nr, int threads) {
  std::vector<GemmBlock> blocks;
  if (M <= 0 || panels <= 0) return blocks;
  const int row_blocks = ceil_div(M, kRowBlock);
  // Whole micro-tiles per block: a short remainder tile in every block would run at a fraction of
  // the full tile's speed.
  const int rows_per_block = ceil_div(ceil_div(M, row_blocks), mr) * mr;
  const int max_panels = std::max(1, kColBlock / nr);
  // Guided: a task takes 1/(2 x threads) of the panels still to hand out, at most max_panels, so
  // the last tasks are single panels and the threads finish within one small task of each other.
  // Equal tasks left them a median 50 µs apart per product (4-5 ms per BERT-base 1x128 forward).
  int remaining = row_blocks * panels;
  for (int m0 = 0; m0 < M; m0 += rows_per_block) {
    const int m1 = std::min(M, m0 + rows_per_block);
    for (int p0 = 0; p0 < panels;) {
      const int guided = threads > 1 ? ceil_div(remaining, 2 * threads) : max_panels;
      const int p1 = std::min(panels, p0 + std::min(max_panels, guided));
      blocks.push_back({m0, m1, p0, p1});
      remaining -= p1 - p0;
      p0 = p1;
    }
  }
  return blocks;
}

void gemm(const KernelTable& kt, int M, int N, int K, const float* A, int lda, const float* Bp,
          float* C, int ldc, const float* bias, Activation act) {
  if (M <= 0 || N <= 0) return;
  const int nr = kt.nr;
  const int panels = ceil_div(N, nr);
  for_each_gemm_block(M, panels, kt.mr, nr, [&](const GemmBlock& b) {
    const int n0 = b.p0 * nr, n1 = std::min(N, b.p1 * nr);
    gemm_serial(kt, b.m1 - b.m0, n1 - n0, K, A + static_cast<size_t>(b.m0) * lda, lda, Bp, panels,
                b.p0, C + static_cast<size_t>(b.m0) * ldc + n0, ldc, bias ? bias + n0 : nullptr,
                act);
  });
}

}  // namespace bertcpu
