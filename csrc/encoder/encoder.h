// The BERT encoder graph: embeddings, N transformer layers, optional pooler. Everything runs in
// fp32 except, in a bfloat16 or int8 model, the products of the layers' dense weights (dense.h).
//
// Work happens on the real tokens only: the batch is flattened to the tokens whose mask is set
// (SequenceLayout), every dense layer runs over those rows, attention runs per sequence over its
// true length, and results are scattered back to the padded [batch, seq, hidden] shape at the end.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cpu/aligned_buffer.h"
#include "encoder/attention.h"
#include "encoder/dense.h"
#include "kernels/gemm.h"

namespace bertcpu {

struct EncoderConfig {
  int hidden = 768, layers = 12, heads = 12, intermediate = 3072;
  int vocab = 30522, max_positions = 512, type_vocab = 2;
  float layer_norm_eps = 1e-12f;
  Activation activation = Activation::gelu_erf;
  bool with_pooler = true;

  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
};

// A padded batch as the caller holds it; mask entries are 0 or 1.
struct EncoderInputs {
  const int64_t* input_ids;
  const int64_t* attention_mask;
  const int64_t* token_type_ids;
  int batch, seq;
};

// Caller-owned, zero-filled outputs; null pointers are not produced.
struct EncoderOutputs {
  float* last_hidden_state;          // [batch, seq, hidden]
  float* pooler_output;              // [batch, hidden]
  std::vector<float*> hidden_states;  // layers + 1 entries of [batch, seq, hidden], or empty
  std::vector<float*> attentions;     // layers entries of [batch, heads, seq, seq], or empty
};

// Scratch memory one forward call may use (beyond the caller's outputs and the per-thread attention
// buffers); larger batches run in groups of whole sequences.
constexpr size_t kScratchBudgetBytes = size_t(256) << 20;

class Encoder {
 public:
  // isa: the fp32 kernels' path. A bfloat16 / int8 model runs its dense products on the
  // low-precision kernels of path dense_isa (see gemm_lowp.h for which exist).
  Encoder(const EncoderConfig& config, Isa isa, Precision precision = Precision::float32,
          Isa dense_isa = Isa::generic);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // fork() handlers: wait for every encoder's forward call to end, then release them on both sides.
  static void lock_all_for_fork();
  static void unlock_all_after_fork();

  const EncoderConfig& config() const { return config_; }
  Isa isa() const { return kt_.isa; }
  Precision precision() const { return kernels_.precision; }
  // The path of the dense products' kernels (isa() for a float32 model).
  Isa dense_isa() const { return kernels_.dense_isa(); }

  // Every tensor the model needs, in checkpoint order, with its shape (PyTorch layout).
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected_weights() const;
  // Copies (and packs) one tensor; throws std::invalid_argument for unknown names or shapes.
  void set_weight(const std::string& name, const float* data, const std::vector<int64_t>& shape);
  // Throws std::invalid_argument listing the tensors never set. Converts the dense layers of a
  // low-precision model (their weights cannot be set again afterwards).
  void finalize();
  std::vector<int64_t> weight_shape(const std::string& name) const;
  void get_weight(const std::string& name, float* out) const;
  size_t packed_bytes() const;

  // Checks the inputs (throws std::invalid_argument) and runs the model. Thread-safe: calls on
  // one Encoder are serialized (they share its scratch memory).
  void forward(const EncoderInputs& in, const EncoderOutputs& out);

 private:
  struct Layer {
    DenseLayer qkv, attention_output, intermediate, output;
    AlignedBuffer ln1_gamma, ln1_beta, ln2_gamma, ln2_beta;
    // Q, K, V arrive as separate tensors; they are staged until all six are present and then
    // packed as one [3 * hidden, hidden] matrix.
    std::vector<float> staged[6];
    int staged_count = 0;
    bool qkv_packed = false;
  };
  // Consecutive sequences run together: tokens [first_token, first_token + tokens) of the batch.
  struct Group {
    int first_sequence = 0, first_token = 0, tokens = 0;
    SequenceLayout layout;  // offsets relative to first_token
  };
  struct Slot {
    std::vector<int64_t> shape;
    std::function<void(const float*)> set;
    std::function<void(float*)> get;
    bool is_set = false;
  };

  void add_slot(const std::string& name, std::vector<int64_t> shape,
                std::function<void(const float*)> set, std::function<void(float*)> get);
  void define_slots();
  void pack_qkv_if_complete(Layer& layer);
  void restage_qkv(Layer& layer);
  SequenceLayout plan(const EncoderInputs& in, std::vector<int>& token_ids,
                      std::vector<int>& columns, std::vector<int>& types) const;
  size_t scratch_floats_per_token() const;
  void run_group(const Group& group, int seq, const std::vector<int>& token_ids,
                 const std::vector<int>& columns, const std::vector<int>& types,
                 const EncoderOutputs& out);
  void scatter(const float* rows, int ld, const Group& group, const std::vector<int>& columns, int seq,
               float* padded, int threads) const;
  void rowwise(int rows, int threads, const std::function<void(int)>& fn) const;

  EncoderConfig config_;
  const KernelTable& kt_;
  ModelKernels kernels_;
  AlignedBuffer word_embeddings_, position_embeddings_, type_embeddings_;
  AlignedBuffer embeddings_ln_gamma_, embeddings_ln_beta_;
  std::vector<Layer> layers_;
  DenseLayer pooler_;  // always fp32: one row per sequence
  std::vector<std::string> slot_order_;
  std::map<std::string, Slot> slots_;
  bool finalized_ = false;

  // Scratch, grown to the largest batch seen; guarded by forward_mutex_.
  std::mutex forward_mutex_;
  AlignedBuffer x_, qkv_, ctx_, tmp_, inter_, cls_;
  // Low-precision copies of dense layers' inputs: Q/K/V's and FFN1's in [0], the attention
  // output's and FFN2's in [1]; each is made while the other is read.
  AlignedBuffer input_scratch_[2];
  AttentionWorkspace attention_workspace_;
};

}  // namespace bertcpu
