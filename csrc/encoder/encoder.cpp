#include "encoder/encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <pthread.h>

#include <memory>
#include <set>
#include <stdexcept>

#include "cpu/thread_pool.h"

namespace bertcpu {

namespace {

// The distance between consecutive rows of an activation buffer of `width` floats: whole cache
// lines, plus one more when the rows would otherwise sit a multiple of 1 KiB apart. The GEMM's
// micro-kernel reads a column of 12 rows of A at once; rows 4 KiB apart (hidden 1024, FFN 3072)
// all map to the same L1 set and evict each other (measured: the 3072 x 768 product of BERT-base
// ran about 10% slower end to end).
static int row_stride(int width) {
  const int stride = ceil_div(width, 16) * 16;
  return (stride * sizeof(float)) % 1024 == 0 ? stride + 16 : stride;
}

// Rows of a row-wise pass (LayerNorm, embeddings, scatter) one task covers.
constexpr int kRowsPerTask = 32;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

void copy_into(AlignedBuffer& dst, const float* src, size_t n) {
  dst.resize(n);
  std::memcpy(dst.data(), src, n * sizeof(float));
}

}  // namespace

void EncoderConfig::validate() const {
  const std::pair<const char*, int> positive[] = {
      {"hidden_size", hidden},       {"num_hidden_layers", layers},
      {"num_attention_heads", heads}, {"intermediate_size", intermediate},
      {"vocab_size", vocab},          {"max_position_embeddings", max_positions},
      {"type_vocab_size", type_vocab}};
  for (const auto& [name, value] : positive)
    if (value <= 0)
      throw std::invalid_argument(std::string(name) + " must be positive, got " +
                                  std::to_string(value));
  // Bounds far above any real encoder, low enough that no size computed from them overflows.
  const std::pair<const char*, int> bounded[] = {
      {"hidden_size", hidden}, {"intermediate_size", intermediate},
      {"max_position_embeddings", max_positions}, {"type_vocab_size", type_vocab}};
  for (const auto& [name, value] : bounded)
    if (value > (1 << 20))
      throw std::invalid_argument(std::string(name) + " = " + std::to_string(value) +
                                  " is larger than bertcpu supports (at most 1048576)");
  if (vocab > (1 << 26))
    throw std::invalid_argument("vocab_size = " + std::to_string(vocab) +
                                " is larger than bertcpu supports (at most 67108864)");
  if (layers > 4096)
    throw std::invalid_argument("num_hidden_layers = " + std::to_string(layers) +
                                " is larger than bertcpu supports (at most 4096)");
  if (hidden % heads != 0)
    throw std::invalid_argument("hidden_size (" + std::to_string(hidden) +
                                ") is not a multiple of num_attention_heads (" +
                                std::to_string(heads) + ")");
  if (!(layer_norm_eps > 0.0f))
    throw std::invalid_argument("layer_norm_eps must be positive");
}

namespace {

// Every live Encoder, so that fork() can wait for their forward calls: a child must not inherit a
// forward_mutex_ locked by a parent thread that does not exist there.
std::mutex g_registry_mutex;
std::set<Encoder*>* g_registry = nullptr;

void register_encoder(Encoder* encoder) {
  static const bool atfork_installed = [] {
    // The pool's fork handlers are installed first, so these run before them at fork (prepare
    // handlers run in reverse order): forward calls end before the pool is locked.
    get_num_threads();
    pthread_atfork([] { Encoder::lock_all_for_fork(); }, [] { Encoder::unlock_all_after_fork(); },
                   [] { Encoder::unlock_all_after_fork(); });
    return true;
  }();
  (void)atfork_installed;
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  if (!g_registry) g_registry = new std::set<Encoder*>();
  g_registry->insert(encoder);
}

// Asks for the n floats at `row` ahead of their use: a LayerNorm's residual row, read and
// rewritten in place, was last touched a dense layer ago and has left L2 since (the layer's
// weights streamed through it); the hardware prefetcher does not start on a 3 KiB row soon enough.
void prefetch_row(const float* row, int n) {
  for (int i = 0; i < n; i += 64 / sizeof(float)) __builtin_prefetch(row + i, 1, 3);
}

}  // namespace

void Encoder::lock_all_for_fork() {
  g_registry_mutex.lock();
  if (g_registry)
    for (Encoder* e : *g_registry) e->forward_mutex_.lock();
}

void Encoder::unlock_all_after_fork() {
  if (g_registry)
    for (Encoder* e : *g_registry) e->forward_mutex_.unlock();
  g_registry_mutex.unlock();
}

Encoder::Encoder(const EncoderConfig& config, Isa isa, Precision precision, Isa dense_isa)
    : config_(config), kt_((config.validate(), kernel_table(isa))) {
  kernels_.precision = precision;
  kernels_.fp32 = &kt_;
  if (precision == Precision::bfloat16) kernels_.bf16 = &bf16_kernels(dense_isa);
  if (precision == Precision::int8) {
    kernels_.int8 = &int8_kernels(dense_isa);
    const Isa bf16_isa = best_bf16_isa(isa);  // for attention's products
    if (bf16_isa != Isa::generic) kernels_.bf16 = &bf16_kernels(bf16_isa);
    if (std::max(config_.hidden, config_.intermediate) > kInt8MaxK)
      throw std::invalid_argument("int8 supports dense layers of at most " +
                                  std::to_string(kInt8MaxK) + " inputs");
  }
  layers_.resize(config_.layers);
  define_slots();
  register_encoder(this);
}

Encoder::~Encoder() {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  if (g_registry) g_registry->erase(this);
}

void Encoder::add_slot(const std::string& name, std::vector<int64_t> shape,
                       std::function<void(const float*)> set, std::function<void(float*)> get) {
  slot_order_.push_back(name);
  slots_[name] = Slot{std::move(shape), std::move(set), std::move(get), false};
}

void Encoder::define_slots() {
  const int64_t H = config_.hidden, I = config_.intermediate;
  auto raw = [this](const std::string& name, AlignedBuffer& buf, std::vector<int64_t> shape) {
    size_t n = 1;
    for (auto d : shape) n *= d;
    add_slot(
        name, shape, [&buf, n](const float* src) { copy_into(buf, src, n); },
        [&buf, n](float* dst) { std::memcpy(dst, buf.data(), n * sizeof(float)); });
  };
  auto linear = [this](const std::string& prefix, DenseLayer& w, int64_t out, int64_t in) {
    w.init(kt_, static_cast<int>(out), static_cast<int>(in));
    add_slot(
        prefix + ".weight", {out, in}, [&w](const float* src) { w.set_weight(src); },
        [&w](float* dst) { w.get_weight(dst); });
    add_slot(
        prefix + ".bias", {out}, [&w](const float* src) { w.set_bias(src); },
        [&w](float* dst) { w.get_bias(dst); });
  };

  raw("embeddings.word_embeddings.weight", word_embeddings_, {config_.vocab, H});
  raw("embeddings.position_embeddings.weight", position_embeddings_, {config_.max_positions, H});
  raw("embeddings.token_type_embeddings.weight", type_embeddings_, {config_.type_vocab, H});
  raw("embeddings.LayerNorm.weight", embeddings_ln_gamma_, {H});
  raw("embeddings.LayerNorm.bias", embeddings_ln_beta_, {H});
  for (int l = 0; l < config_.layers; ++l) {
    Layer& layer = layers_[l];
    layer.qkv.init(kt_, static_cast<int>(3 * H), static_cast<int>(H));
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    const char* qkv_names[3] = {"query", "key", "value"};
    for (int part = 0; part < 3; ++part) {
      for (int is_bias = 0; is_bias < 2; ++is_bias) {
        const int index = part * 2 + is_bias;
        const std::vector<int64_t> shape = is_bias ? std::vector<int64_t>{H} : std::vector<int64_t>{H, H};
        const size_t n = is_bias ? H : H * H;
        add_slot(
            p + "attention.self." + qkv_names[part] + (is_bias ? ".bias" : ".weight"), shape,
            [this, &layer, index, n](const float* src) {
              if (layer.qkv_packed) restage_qkv(layer);
              if (layer.staged[index].empty()) ++layer.staged_count;
              layer.staged[index].assign(src, src + n);
              pack_qkv_if_complete(layer);
            },
            [&layer, index, part, is_bias, H, n](float* dst) {
              if (!layer.qkv_packed) {
                std::memcpy(dst, layer.staged[index].data(), n * sizeof(float));
              } else if (is_bias) {
                std::vector<float> all(static_cast<size_t>(3 * H));
                layer.qkv.get_bias(all.data());
                std::memcpy(dst, all.data() + part * H, H * sizeof(float));
              } else {
                std::vector<float> all(static_cast<size_t>(3 * H * H));
                layer.qkv.get_weight(all.data());
                std::memcpy(dst, all.data() + part * H * H, H * H * sizeof(float));
              }
            });
      }
    }
    linear(p + "attention.output.dense", layer.attention_output, H, H);
    raw(p + "attention.output.LayerNorm.weight", layer.ln1_gamma, {H});
    raw(p + "attention.output.LayerNorm.bias", layer.ln1_beta, {H});
    linear(p + "intermediate.dense", layer.intermediate, I, H);
    linear(p + "output.dense", layer.output, H, I);
    raw(p + "output.LayerNorm.weight", layer.ln2_gamma, {H});
    raw(p + "output.LayerNorm.bias", layer.ln2_beta, {H});
  }
  if (config_.with_pooler) linear("pooler.dense", pooler_, H, H);
}

void Encoder::pack_qkv_if_complete(Layer& layer) {
  if (layer.staged_count < 6) return;
  const size_t H = config_.hidden;
  std::vector<float> weight(3 * H * H), bias(3 * H);
  for (int part = 0; part < 3; ++part) {
    std::memcpy(weight.data() + part * H * H, layer.staged[2 * part].data(), H * H * sizeof(float));
    std::memcpy(bias.data() + part * H, layer.staged[2 * part + 1].data(), H * sizeof(float));
  }
  layer.qkv.set_weight(weight.data());
  layer.qkv.set_bias(bias.data());
  // Free the staging at once: kept for every layer it would add a third of a layer's weights to
  // the loading peak. A later re-set of one of the six tensors restages from the packed copy.
  for (auto& staged : layer.staged) std::vector<float>().swap(staged);
  layer.staged_count = 0;
  layer.qkv_packed = true;
}

void Encoder::restage_qkv(Layer& layer) {
  const size_t H = config_.hidden;
  if (precision() != Precision::float32)
    throw std::invalid_argument(std::string("the weights of a ") + precision_name(precision()) +
                                " model cannot change once it is loaded");
  std::vector<float> weight(3 * H * H), bias(3 * H);
  layer.qkv.get_weight(weight.data());
  layer.qkv.get_bias(bias.data());
  for (int part = 0; part < 3; ++part) {
    layer.staged[2 * part].assign(weight.begin() + part * H * H, weight.begin() + (part + 1) * H * H);
    layer.staged[2 * part + 1].assign(bias.begin() + part * H, bias.begin() + (part + 1) * H);
  }
  layer.staged_count = 6;
  layer.qkv_packed = false;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Encoder::expected_weights() const {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& name : slot_order_) out.emplace_back(name, slots_.at(name).shape);
  return out;
}

void Encoder::set_weight(const std::string& name, const float* data,
                         const std::vector<int64_t>& shape) {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw std::invalid_argument("unexpected tensor '" + name + "'");
  if (shape != it->second.shape)
    throw std::invalid_argument("tensor '" + name + "' has shape " + shape_string(shape) +
                                ", expected " + shape_string(it->second.shape));
  it->second.set(data);
  it->second.is_set = true;
}

void Encoder::finalize() {
  std::string missing;
  int count = 0;
  for (const auto& name : slot_order_) {
    if (slots_.at(name).is_set) continue;
    if (count < 10) missing += (count ? ", " : "") + name;
    ++count;
  }
  if (count > 0)
    throw std::invalid_argument("missing " + std::to_string(count) + " tensor(s): " + missing +
                                (count > 10 ? ", ..." : ""));
  // The feed-forward input is a LayerNorm's output: its int8 quantization moves range from the
  // large channels to the weights, estimating each channel's size as |gamma| + |beta|
  // (all-MiniLM-L6-v2, 1000 sentences, this layer alone in int8: sentence cosine to fp32
  // 0.99971 -> 0.99984). The same for Q/K/V makes them worse (0.99952 -> 0.99942): V's error
  // is in the rows' own outliers, not in the channels gamma and beta point to.
  std::vector<float> ffn_input_range(config_.hidden);
  for (Layer& layer : layers_) {
    layer.qkv.convert(kernels_);
    layer.attention_output.convert(kernels_);
    for (int j = 0; j < config_.hidden; ++j)
      ffn_input_range[j] =
          std::fabs(layer.ln1_gamma.data()[j]) + std::fabs(layer.ln1_beta.data()[j]);
    layer.intermediate.convert(kernels_, ffn_input_range.data());
    layer.output.convert(kernels_);
  }
  finalized_ = true;
}

std::vector<int64_t> Encoder::weight_shape(const std::string& name) const {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw std::invalid_argument("unknown tensor '" + name + "'");
  return it->second.shape;
}

void Encoder::get_weight(const std::string& name, float* out) const {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw std::invalid_argument("unknown tensor '" + name + "'");
  if (!it->second.is_set) throw std::invalid_argument("tensor '" + name + "' was never set");
  it->second.get(out);
}

size_t Encoder::packed_bytes() const {
  size_t total = word_embeddings_.bytes() + position_embeddings_.bytes() +
                 type_embeddings_.bytes() + embeddings_ln_gamma_.bytes() +
                 embeddings_ln_beta_.bytes() + pooler_.bytes();
  for (const Layer& l : layers_)
    for (const DenseLayer* w : {&l.qkv, &l.attention_output, &l.intermediate, &l.output})
      total += w->bytes();
  return total;
}

SequenceLayout Encoder::plan(const EncoderInputs& in, std::vector<int>& token_ids,
                             std::vector<int>& columns, std::vector<int>& types) const {
  if (in.batch <= 0 || in.seq <= 0) throw std::invalid_argument("empty batch");
  if (in.seq > config_.max_positions)
    throw std::invalid_argument("sequence length " + std::to_string(in.seq) +
                                " exceeds max_position_embeddings (" +
                                std::to_string(config_.max_positions) + ")");
  SequenceLayout layout;
  for (int b = 0; b < in.batch; ++b) {
    layout.offsets.push_back(static_cast<int>(token_ids.size()));
    for (int j = 0; j < in.seq; ++j) {
      const size_t at = static_cast<size_t>(b) * in.seq + j;
      const int64_t m = in.attention_mask[at];
      if (m != 0 && m != 1)
        throw std::invalid_argument("attention_mask must hold only 0 and 1, found " +
                                    std::to_string(m));
      if (m == 0) continue;
      const int64_t id = in.input_ids[at], type = in.token_type_ids[at];
      if (id < 0 || id >= config_.vocab)
        throw std::invalid_argument("input id " + std::to_string(id) + " at [" +
                                    std::to_string(b) + ", " + std::to_string(j) +
                                    "] is outside the vocabulary (size " +
                                    std::to_string(config_.vocab) + ")");
      if (type < 0 || type >= config_.type_vocab)
        throw std::invalid_argument("token type " + std::to_string(type) + " at [" +
                                    std::to_string(b) + ", " + std::to_string(j) +
                                    "] is outside [0, " + std::to_string(config_.type_vocab) + ")");
      token_ids.push_back(static_cast<int>(id));
      columns.push_back(j);
      types.push_back(static_cast<int>(type));
    }
    const int length = static_cast<int>(token_ids.size()) - layout.offsets.back();
    if (length == 0)
      throw std::invalid_argument("sequence " + std::to_string(b) +
                                  " has an all-zero attention_mask");
    layout.lengths.push_back(length);
    layout.max_length = std::max(layout.max_length, length);
  }
  return layout;
}

void Encoder::rowwise(int rows, int threads, const std::function<void(int)>& fn) const {
  const int tasks = ceil_div(rows, kRowsPerTask);
  parallel_for(
      tasks,
      [&](int task) {
        const int r1 = std::min(rows, (task + 1) * kRowsPerTask);
        for (int r = task * kRowsPerTask; r < r1; ++r) fn(r);
      },
      threads);
}

void Encoder::scatter(const float* rows, int ld, const Group& group,
                      const std::vector<int>& columns, int seq, float* padded, int threads) const {
  const int H = config_.hidden;
  std::vector<int> row_batch(group.tokens);
  for (int b = 0; b < group.layout.batch(); ++b)
    std::fill_n(row_batch.begin() + group.layout.offsets[b], group.layout.lengths[b],
                group.first_sequence + b);
  const int* group_columns = columns.data() + group.first_token;
  rowwise(group.tokens, threads, [&](int t) {
    std::memcpy(padded + (static_cast<size_t>(row_batch[t]) * seq + group_columns[t]) * H,
                rows + static_cast<size_t>(t) * ld, H * sizeof(float));
  });
}

size_t Encoder::scratch_floats_per_token() const {
  // x, ctx, tmp (hidden each), qkv (3 x hidden), intermediate, each row padded to its stride;
  // a low-precision model also converts dense layers' inputs (at most 2 bytes per value, plus a
  // scale per row: bounded by one float per input; the FFN's two at once) and gives attention q,
  // k, v in bf16.
  const size_t fp32 = 3 * static_cast<size_t>(row_stride(config_.hidden)) +
                      row_stride(3 * config_.hidden) + row_stride(config_.intermediate);
  if (precision() == Precision::float32) return fp32;
  return fp32 + config_.hidden + config_.intermediate +
         attention_bf16_floats_per_token(kernels_.bf16, config_.hidden, config_.heads);
}

void Encoder::forward(const EncoderInputs& in, const EncoderOutputs& out) {
  if (!finalized_) throw std::invalid_argument("the model's weights are not all loaded");
  const BusyScope busy;  // first, so that sleeping workers wake while the inputs are checked
  std::vector<int> token_ids, columns, types;
  const SequenceLayout layout = plan(in, token_ids, columns, types);

  // Sequences are independent: a batch whose scratch would exceed kScratchBudgetBytes runs as
  // consecutive groups of whole sequences, so one huge call cannot allocate without limit.
  const int budget_tokens = static_cast<int>(std::min<size_t>(
      INT32_MAX, kScratchBudgetBytes / (scratch_floats_per_token() * sizeof(float))));
  const int group_tokens = std::max(budget_tokens, layout.max_length);

  std::lock_guard<std::mutex> guard(forward_mutex_);
  for (int b0 = 0; b0 < layout.batch();) {
    Group group;
    group.first_sequence = b0;
    group.first_token = layout.offsets[b0];
    int b1 = b0;
    while (b1 < layout.batch() &&
           (b1 == b0 || group.tokens + layout.lengths[b1] <= group_tokens)) {
      group.layout.offsets.push_back(group.tokens);
      group.layout.lengths.push_back(layout.lengths[b1]);
      group.layout.max_length = std::max(group.layout.max_length, layout.lengths[b1]);
      group.tokens += layout.lengths[b1];
      ++b1;
    }
    run_group(group, in.seq, token_ids, columns, types, out);
    b0 = b1;
  }
}

void Encoder::run_group(const Group& group, int seq, const std::vector<int>& token_ids,
                        const std::vector<int>& columns, const std::vector<int>& types,
                        const EncoderOutputs& out) {
  const int T = group.tokens;
  const int H = config_.hidden, I = config_.intermediate, heads = config_.heads;
  const float eps = config_.layer_norm_eps;
  const int threads = get_num_threads();
  const size_t rows = T;
  const int ldh = row_stride(H), ldq = row_stride(3 * H), ldi = row_stride(I);
  x_.reserve(rows * ldh);
  ctx_.reserve(rows * ldh);
  tmp_.reserve(rows * ldh);
  qkv_.reserve(rows * ldq);
  inter_.reserve(rows * ldi);
  float *x = x_.data(), *ctx = ctx_.data(), *tmp = tmp_.data();
  float *qkv = qkv_.data(), *inter = inter_.data();
  const int* ids = token_ids.data() + group.first_token;
  const int* cols = columns.data() + group.first_token;
  const int* tys = types.data() + group.first_token;

  // Each LayerNorm hands its rows to the next dense layer's low-precision copy (quantized or
  // rounded) as it writes them, while they are in L1: the next layer's input, ready.
  DenseLayer::Input qkv_in = layers_[0].qkv.begin_input(T, x, ldh, input_scratch_[0]);
  rowwise(T, threads, [&](int t) {
    kt_.add_layernorm(word_embeddings_.data() + static_cast<size_t>(ids[t]) * H,
                      position_embeddings_.data() + static_cast<size_t>(cols[t]) * H,
                      type_embeddings_.data() + static_cast<size_t>(tys[t]) * H,
                      embeddings_ln_gamma_.data(), embeddings_ln_beta_.data(), eps,
                      x + static_cast<size_t>(t) * ldh, H);
    layers_[0].qkv.prepare_row(qkv_in, t);
  });
  if (!out.hidden_states.empty())
    scatter(x, ldh, group, columns, seq, out.hidden_states[0], threads);

  // A bfloat16 / int8 model's attention reads q, k, v rounded to bf16: each layer's Q/K/V product
  // writes them so, and its fp32 output never leaves L2.
  const Bf16Kernels* attention_bf16 = precision() == Precision::float32 ? nullptr : kernels_.bf16;
  int ld_rounded = 0;
  bf16* rounded =
      attention_bf16_rows(attention_workspace_, kt_, attention_bf16, T, H, heads, &ld_rounded);
  for (int l = 0; l < config_.layers; ++l) {
    const Layer& layer = layers_[l];
    if (rounded)
      layer.qkv.run_input_rounded(kt_, *attention_bf16, T, qkv_in, rounded, ld_rounded, true);
    else
      layer.qkv.run_input(kt_, T, qkv_in, qkv, ldq, true, Activation::none);
    AttentionProbsOut probs;
    if (!out.attentions.empty())
      probs = {out.attentions[l] + static_cast<size_t>(group.first_sequence) * heads * seq * seq,
               seq, cols};
    multi_head_attention(kt_, attention_bf16, rounded ? nullptr : qkv, ldq, H, heads,
                         group.layout, ctx, ldh, probs, attention_workspace_, threads);
    // Each product hands its finished rows on (run_rows): to the LayerNorm, and from it to the
    // next product's copy, or straight to the next product's copy.
    const DenseLayer::Input attention_in =
        layer.attention_output.prepare(T, ctx, ldh, input_scratch_[1]);
    const DenseLayer::Input ffn_in = layer.intermediate.begin_input(T, x, ldh, input_scratch_[0]);
    layer.attention_output.run_rows(
        kt_, T, attention_in, tmp, ldh, false, Activation::none, [&](int t, const float* row) {
          float* residual = x + static_cast<size_t>(t) * ldh;
          prefetch_row(residual + ldh, H);
          kt_.add_layernorm(row, layer.attention_output.bias(), residual, layer.ln1_gamma.data(),
                            layer.ln1_beta.data(), eps, residual, H);
          layer.intermediate.prepare_row(ffn_in, t);
        });
    const DenseLayer::Input output_in = layer.output.begin_input(T, inter, ldi, input_scratch_[1]);
    layer.intermediate.run_rows(kt_, T, ffn_in, inter, ldi, true, config_.activation,
                                [&](int t, const float* row) {
                                  layer.output.prepare_row(output_in, t, row);
                                });
    const DenseLayer* next_qkv = l + 1 < config_.layers ? &layers_[l + 1].qkv : nullptr;
    if (next_qkv) qkv_in = next_qkv->begin_input(T, x, ldh, input_scratch_[0]);
    layer.output.run_rows(
        kt_, T, output_in, tmp, ldh, false, Activation::none, [&](int t, const float* row) {
          float* residual = x + static_cast<size_t>(t) * ldh;
          prefetch_row(residual + ldh, H);
          kt_.add_layernorm(row, layer.output.bias(), residual, layer.ln2_gamma.data(),
                            layer.ln2_beta.data(), eps, residual, H);
          if (next_qkv) next_qkv->prepare_row(qkv_in, t);
        });
    if (!out.hidden_states.empty())
      scatter(x, ldh, group, columns, seq, out.hidden_states[l + 1], threads);
  }
  scatter(x, ldh, group, columns, seq, out.last_hidden_state, threads);

  if (config_.with_pooler && out.pooler_output) {
    // The pooler reads each sequence's first real token (HF reads column 0, the same token
    // unless the batch is left-padded).
    const int B = group.layout.batch();
    cls_.reserve(static_cast<size_t>(B) * H);
    for (int b = 0; b < B; ++b)
      std::memcpy(cls_.data() + static_cast<size_t>(b) * H,
                  x + static_cast<size_t>(group.layout.offsets[b]) * ldh, H * sizeof(float));
    pooler_.run(kt_, B, cls_.data(), H,
                out.pooler_output + static_cast<size_t>(group.first_sequence) * H, H, true,
                Activation::tanh, input_scratch_[0]);
  }
}

}  // namespace bertcpu
