#include "encoder/vocab_head.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cpu/thread_pool.h"

namespace bertcpu {

namespace {

// Rows of one pooled task: whole sequences up to this many tokens (a longer sequence alone). The
// decoder panel a task multiplies is read once per block of rows, so larger blocks read the
// decoder fewer times; the tile (rows x nr floats, 32 KiB at 256 x 32) stays in L1.
constexpr int kPoolBlockRows = 256;
// Panels of the decoder one pooled task covers (8 x 32 columns for AVX-512).
constexpr int kPoolTaskPanels = 8;
// The widest decoder panel the pooled epilogue's stack buffer holds.
constexpr int kMaxPanelWidth = 64;
// Rows of a row-wise pass (LayerNorm, reductions) one task covers.
constexpr int kRowsPerTask = 32;

const char* const kNames[] = {"transform.dense.weight",     "transform.dense.bias",
                              "transform.LayerNorm.weight", "transform.LayerNorm.bias",
                              "decoder.weight",             "bias"};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// Row distance of the head's activation buffers: whole cache lines.
int row_floats(int width) { return ceil_div(width, 16) * 16; }

inline float splade_act(float x, int log_steps) {
  float v = x > 0.0f ? x : 0.0f;
  for (int s = 0; s < log_steps; ++s) v = std::log1p(v);
  return v;
}

// Consecutive whole sequences [first, last) whose tokens add up to at most `rows` (or one longer
// sequence).
std::vector<std::pair<int, int>> sequence_blocks(const std::vector<int>& lengths, int rows) {
  std::vector<std::pair<int, int>> blocks;
  const int n = static_cast<int>(lengths.size());
  for (int b0 = 0; b0 < n;) {
    int b1 = b0, tokens = 0;
    while (b1 < n && (b1 == b0 || tokens + lengths[b1] <= rows)) tokens += lengths[b1++];
    blocks.emplace_back(b0, b1);
    b0 = b1;
  }
  return blocks;
}

}  // namespace

VocabHead::VocabHead(int hidden, int vocab, Activation act, float layer_norm_eps, Isa isa,
                     Precision precision, Isa dense_isa)
    : hidden_(hidden), vocab_(vocab), act_(act), eps_(layer_norm_eps), kt_(kernel_table(isa)) {
  if (hidden <= 0 || vocab <= 0 || hidden > (1 << 20) || vocab > (1 << 26))
    throw std::invalid_argument("masked-LM head: hidden " + std::to_string(hidden) + " / vocab " +
                                std::to_string(vocab) + " out of range");
  if (!(layer_norm_eps > 0.0f)) throw std::invalid_argument("layer_norm_eps must be positive");
  kernels_.precision = precision;
  kernels_.fp32 = &kt_;
  if (precision == Precision::bfloat16) kernels_.bf16 = &bf16_kernels(dense_isa);
  if (precision == Precision::int8) kernels_.int8 = &int8_kernels(dense_isa);
  transform_.init(kt_, hidden, hidden);
  decoder_.init(kt_, vocab, hidden);
  ln_gamma_.resize(hidden);
  ln_beta_.resize(hidden);
  missing_.assign(std::begin(kNames), std::end(kNames));
}

std::vector<std::pair<std::string, std::vector<int64_t>>> VocabHead::expected_weights() const {
  const int64_t H = hidden_, V = vocab_;
  return {{kNames[0], {H, H}}, {kNames[1], {H}}, {kNames[2], {H}},
          {kNames[3], {H}},    {kNames[4], {V, H}}, {kNames[5], {V}}};
}

void VocabHead::set_weight(const std::string& name, const float* data,
                           const std::vector<int64_t>& shape) {
  std::vector<int64_t> expected;
  for (const auto& [known, known_shape] : expected_weights())
    if (known == name) expected = known_shape;
  if (expected.empty()) throw std::invalid_argument("unexpected masked-LM head tensor '" + name + "'");
  if (shape != expected)
    throw std::invalid_argument("tensor '" + name + "' has shape " + shape_string(shape) +
                                ", expected " + shape_string(expected));
  if (name == kNames[0]) transform_.set_weight(data);
  if (name == kNames[1]) transform_.set_bias(data);
  if (name == kNames[2]) std::memcpy(ln_gamma_.data(), data, hidden_ * sizeof(float));
  if (name == kNames[3]) std::memcpy(ln_beta_.data(), data, hidden_ * sizeof(float));
  if (name == kNames[4]) decoder_.set_weight(data);
  if (name == kNames[5]) decoder_.set_bias(data);
  missing_.erase(std::remove(missing_.begin(), missing_.end(), name), missing_.end());
}

void VocabHead::finalize() {
  if (!missing_.empty()) {
    std::string names;
    for (const auto& name : missing_) names += (names.empty() ? "" : ", ") + name;
    throw std::invalid_argument("masked-LM head: missing tensor(s) " + names);
  }
  transform_.convert(kernels_);
  decoder_.convert(kernels_);
  // The pooled epilogue keeps one tile row of a panel on the stack.
  if (decoder_.panel_width() > kMaxPanelWidth)
    throw std::logic_error("masked-LM head: decoder panels wider than 64 columns");
}

size_t VocabHead::packed_bytes() const {
  return transform_.bytes() + decoder_.bytes() + ln_gamma_.bytes() + ln_beta_.bytes();
}

void VocabHead::transform(const float* x, int rows, int ld, float* y, AlignedBuffer& scratch) const {
  transform_.run(kt_, rows, x, ld, y, ld, true, act_, scratch);
  parallel_for(ceil_div(rows, kRowsPerTask), [&](int task) {
    const int r1 = std::min(rows, (task + 1) * kRowsPerTask);
    for (int r = task * kRowsPerTask; r < r1; ++r) {
      float* row = y + static_cast<size_t>(r) * ld;
      kt_.add_layernorm(row, nullptr, nullptr, ln_gamma_.data(), ln_beta_.data(), eps_, row,
                        hidden_);
    }
  });
}

void VocabHead::logits(const float* hidden, int rows, int ld, float* out) const {
  if (missing_.size() || rows <= 0) {
    if (rows > 0) throw std::invalid_argument("the masked-LM head's weights are not all loaded");
    return;
  }
  const BusyScope busy;
  const int ldy = row_floats(hidden_);
  AlignedBuffer x(static_cast<size_t>(rows) * ldy), y(static_cast<size_t>(rows) * ldy), scratch;
  for (int r = 0; r < rows; ++r)
    std::memcpy(x.data() + static_cast<size_t>(r) * ldy, hidden + static_cast<size_t>(r) * ld,
                hidden_ * sizeof(float));
  transform(x.data(), rows, ldy, y.data(), scratch);
  decoder_.run(kt_, rows, y.data(), ldy, out, vocab_, true, Activation::none, scratch);
}

void VocabHead::pool(const float* hidden, const int64_t* mask, int batch, int seq,
                     VocabPooling pooling, int log_steps, float* out) const {
  if (!missing_.empty()) throw std::invalid_argument("the masked-LM head's weights are not all loaded");
  if (batch <= 0 || seq <= 0) throw std::invalid_argument("empty batch");
  if (log_steps < 1 || log_steps > 2) throw std::invalid_argument("log_steps must be 1 or 2");
  std::vector<int> offsets, lengths;
  int rows = 0;
  for (int b = 0; b < batch; ++b) {
    offsets.push_back(rows);
    for (int j = 0; j < seq; ++j) {
      const int64_t m = mask[static_cast<size_t>(b) * seq + j];
      if (m != 0 && m != 1)
        throw std::invalid_argument("attention_mask must hold only 0 and 1, found " + std::to_string(m));
      rows += static_cast<int>(m);
    }
    lengths.push_back(rows - offsets.back());
    if (lengths.back() == 0)
      throw std::invalid_argument("sequence " + std::to_string(b) + " has an all-zero attention_mask");
  }
  const BusyScope busy;
  // The real tokens, flattened: only they are transformed and projected.
  const int ld = row_floats(hidden_);
  AlignedBuffer x(static_cast<size_t>(rows) * ld), y(static_cast<size_t>(rows) * ld), scratch;
  for (int b = 0, r = 0; b < batch; ++b)
    for (int j = 0; j < seq; ++j)
      if (mask[static_cast<size_t>(b) * seq + j])
        std::memcpy(x.data() + static_cast<size_t>(r++) * ld,
                    hidden + (static_cast<size_t>(b) * seq + j) * hidden_, hidden_ * sizeof(float));
  transform(x.data(), rows, ld, y.data(), scratch);
  pool_fused(y.data(), ld, offsets, lengths, pooling, log_steps, out);
}

void VocabHead::pool_fused(const float* y, int ld, const std::vector<int>& offsets,
                           const std::vector<int>& lengths, VocabPooling pooling, int log_steps,
                           float* out) const {
  const int rows = offsets.back() + lengths.back();
  AlignedBuffer scratch;  // the low-precision copy of y, made once for every task
  const DenseLayer::Input input = decoder_.prepare(rows, y, ld, scratch);
  const int nr = decoder_.panel_width(), panels = ceil_div(vocab_, nr);
  const float* bias = decoder_.bias();
  const auto blocks = sequence_blocks(lengths, kPoolBlockRows);
  int max_rows = 0;
  for (const auto& [b0, b1] : blocks)
    max_rows = std::max(max_rows, offsets[b1 - 1] + lengths[b1 - 1] - offsets[b0]);
  const int runs = ceil_div(panels, kPoolTaskPanels);
  const int row_blocks = static_cast<int>(blocks.size());
  std::vector<AlignedBuffer> tiles(get_num_threads());
  // Task t: panel run t / row_blocks over row block t % row_blocks. Consecutive tasks share a
  // panel run, so the threads read the same decoder columns at about the same time (from L3 for
  // the second one).
  parallel_for(runs * row_blocks, [&](int task) {
    const auto [b0, b1] = blocks[task % row_blocks];
    const int run = task / row_blocks;
    // From an even row: the kernels' pair-interleaved row layouts (activation_offset()) start
    // blocks at pairs. The row before, if taken, is computed and ignored.
    const int first_row = offsets[b0] - offsets[b0] % 2;
    const int block_rows = offsets[b1 - 1] + lengths[b1 - 1] - first_row;
    AlignedBuffer& tile = tiles[current_worker()];
    tile.reserve(static_cast<size_t>(max_rows + 1) * nr);
    for (int p = run * kPoolTaskPanels; p < std::min(panels, (run + 1) * kPoolTaskPanels); ++p) {
      const int n = std::min(nr, vocab_ - p * nr);
      decoder_.run_block(kt_, input, {first_row, first_row + block_rows, p, p + 1}, tile.data(),
                         nr, pooling == VocabPooling::sum ? bias + p * nr : nullptr,
                         Activation::none);
      // The epilogue: this panel's columns of each sequence's pooled vector.
      for (int b = b0; b < b1; ++b) {
        const float* rows_b = tile.data() + static_cast<size_t>(offsets[b] - first_row) * nr;
        float* dst = out + static_cast<size_t>(b) * vocab_ + p * nr;
        if (pooling == VocabPooling::max) {
          float best[kMaxPanelWidth];
          std::memcpy(best, rows_b, n * sizeof(float));
          for (int r = 1; r < lengths[b]; ++r)
            for (int j = 0; j < n; ++j) best[j] = std::max(best[j], rows_b[r * nr + j]);
          for (int j = 0; j < n; ++j) dst[j] = splade_act(best[j] + bias[p * nr + j], log_steps);
        } else {
          for (int j = 0; j < n; ++j) {
            float sum = 0.0f;
            for (int r = 0; r < lengths[b]; ++r) sum += splade_act(rows_b[r * nr + j], log_steps);
            dst[j] = sum;
          }
        }
      }
    }
  });
}

}  // namespace bertcpu
