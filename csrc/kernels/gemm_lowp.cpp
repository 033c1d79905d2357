#include "kernels/gemm_lowp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "cpu/cpu_isa.h"
#include "cpu/thread_pool.h"

namespace bertcpu {

namespace {

// Rows one task of the conversion / quantization pre-pass covers.
constexpr int kPrepassRows = 16;

template <class T>
T* as(AlignedBuffer& buffer) {
  return reinterpret_cast<T*>(buffer.data());
}
template <class T>
const T* as(const AlignedBuffer& buffer) {
  return reinterpret_cast<const T*>(buffer.data());
}
// Floats an AlignedBuffer needs to hold `count` values of T.
template <class T>
size_t floats_for(size_t count) {
  return (count * sizeof(T) + sizeof(float) - 1) / sizeof(float);
}

// f(i) for every row i < M, in tasks of kPrepassRows rows on up to max_threads threads.
template <class F>
void for_each_row(int M, int max_threads, const F& f) {
  parallel_for(
      ceil_div(M, kPrepassRows),
      [&](int task) {
        const int end = std::min(M, (task + 1) * kPrepassRows);
        for (int i = task * kPrepassRows; i < end; ++i) f(i);
      },
      max_threads);
}

// The table's begin_block / end_block around one block of micro-kernel calls on this thread
// (AMX's tile configuration).
template <class Table>
class BlockScope {
 public:
  explicit BlockScope(const Table& kt) : kt_(kt) {
    if (kt_.begin_block) kt_.begin_block();
  }
  ~BlockScope() {
    if (kt_.end_block) kt_.end_block();
  }
  BlockScope(const BlockScope&) = delete;
  BlockScope& operator=(const BlockScope&) = delete;

 private:
  const Table& kt_;
};

// block(b, C at b's first element, bias at b's first column or null) for every block of
// gemm_blocks() over W's panels, on up to max_threads threads: the threaded driver of both
// precisions.
template <class Table, class Packed, class F>
void run_blocks(const Table& kt, const Packed& w, int M, int max_threads, float* C, int ldc,
                bool with_bias, const F& block) {
  const int nr = kt.nr, threads = max_threads > 0 ? max_threads : get_num_threads();
  const std::vector<GemmBlock> blocks =
      gemm_blocks(M, ceil_div(w.out_features, nr), kt.mr, nr, threads);
  const float* bias = with_bias ? w.bias.data() : nullptr;
  parallel_for(
      static_cast<int>(blocks.size()),
      [&](int task) {
        const GemmBlock& b = blocks[task];
        block(b, C + static_cast<size_t>(b.m0) * ldc + b.p0 * nr,
              bias ? bias + b.p0 * nr : nullptr);
      },
      max_threads);
}

// Rows of A a pre-pass allocates for M rows, those past M zero: a micro-kernel may read whole
// groups of kLowpRowAlign rows (AMX's 16-row tiles) from any row a block starts at, and a
// pair-interleaved layout (activation_offset()) holds whole pairs.
int padded_rows(int M) { return (M + kLowpRowAlign) / 2 * 2; }

// Whether this CPU runs the fp32 path `isa`, which its low-precision kernels build on.
bool runs_base(Isa isa) {
  const std::vector<Isa> isas = available_isas();
  return std::find(isas.begin(), isas.end(), isa) != isas.end();
}

bool runs_bf16(Isa isa) {
  switch (isa) {
    case Isa::generic:
      return true;
    case Isa::avx512:
      return runs_base(isa) && cpu_features().avx512_bf16;
    case Isa::amx:
      return runs_base(isa) && amx_selection().bf16 != nullptr;
    case Isa::i8mm:
      return runs_base(isa) && cpu_features().bf16;
    default:
      return false;
  }
}

bool runs_int8(Isa isa) {
  switch (isa) {
    case Isa::generic:
    case Isa::avx2:
    case Isa::avx512:  // AVX512_VNNI's kernels, or AVX512BW's without it
      return runs_base(isa);
    case Isa::amx:
      return runs_base(isa) && amx_selection().int8 != nullptr;
    case Isa::dotprod:
    case Isa::i8mm:
      return runs_base(isa);
    default:
      return false;
  }
}

// A kernel table with whether this CPU runs it. `table` is called only when it does: the first call
// initializes the table with code compiled for the table's instruction set (listing every table
// raised SIGILL on AVX2-only CPUs, in the initializer of a table for instructions they lack).
// `name` is for refusing the tables this CPU cannot run; a runnable table is known by its own name.
template <class Table>
struct TableEntry {
  const char* name;
  bool runs;
  const Table& (*table)();
};

// Every bf16 table, lowest first.
std::vector<TableEntry<Bf16Kernels>> bf16_tables() {
  using Entry = TableEntry<Bf16Kernels>;
  std::vector<Entry> out{{"generic", true, generic_bf16_kernels},
                         {"amx_model", true, []() -> const Bf16Kernels& {
                            return amx_model_bf16_kernels();
                          }}};
#if defined(BERTCPU_X86)
  out.push_back({"avx512", runs_bf16(Isa::avx512), avx512_bf16_kernels});
  out.push_back({"amx", runs_base(Isa::amx) && amx_selection().bf16 == &amx_bf16_kernels(),
                 amx_bf16_kernels});
#endif
#if defined(BERTCPU_ARM64)
  out.push_back({"i8mm", runs_bf16(Isa::i8mm), neon_bf16_kernels});
#endif
  return out;
}

// Every int8 table, lowest first.
std::vector<TableEntry<Int8Kernels>> int8_tables() {
  using Entry = TableEntry<Int8Kernels>;
  std::vector<Entry> out{{"generic", true, generic_int8_kernels},
                         {"amx_model", true, []() -> const Int8Kernels& {
                            return amx_model_int8_kernels();
                          }}};
#if defined(BERTCPU_X86)
  const bool vnni512 = runs_int8(Isa::avx512) && cpu_features().avx512_vnni;
  out.push_back({"avx2", runs_int8(Isa::avx2), avx2_int8_kernels});
  out.push_back(
      {"avxvnni", runs_int8(Isa::avx2) && cpu_features().avx_vnni, avx_vnni_int8_kernels});
  out.push_back({"avx512bw", runs_int8(Isa::avx512), avx512bw_int8_kernels});
  out.push_back({"avx512vnni_ymm", vnni512, avx512_vnni_ymm_int8_kernels});
  out.push_back({"avx512", vnni512, avx512_vnni_int8_kernels});
  out.push_back({"amx", runs_base(Isa::amx) && amx_selection().int8 == &amx_int8_kernels(),
                 amx_int8_kernels});
#endif
#if defined(BERTCPU_ARM64)
  out.push_back({"dotprod", runs_int8(Isa::dotprod), dotprod_int8_kernels});
  out.push_back({"i8mm", runs_int8(Isa::i8mm), i8mm_int8_kernels});
#endif
  return out;
}

// The table called `name` among `tables` (the runnable ones by their Bf16Kernels / Int8Kernels::
// name); a name no table has is an fp32 path's (by_path gives that path's best table, or says why
// it has none) or unknown.
template <class Table, class ByPath>
const Table& table_named(const std::vector<TableEntry<Table>>& tables, const std::string& name,
                         const char* precision, const ByPath& by_path) {
  for (const TableEntry<Table>& entry : tables) {
    if (entry.runs && name == entry.table().name) return entry.table();
    if (!entry.runs && name == entry.name)
      throw std::invalid_argument("this CPU cannot run the " + name + " " + precision +
                                  " kernels");
  }
  return by_path(parse_isa(name));
}

// The names of the tables this CPU runs, lowest first.
template <class Table>
std::vector<std::string> runnable_names(const std::vector<TableEntry<Table>>& tables) {
  std::vector<std::string> out;
  for (const TableEntry<Table>& entry : tables)
    if (entry.runs) out.push_back(entry.table().name);
  return out;
}

}  // namespace

// ---- kernel tables ------------------------------------------------------------------------------

const Bf16Kernels& bf16_kernels(Isa isa) {
  check_isa_supported(isa);
  switch (isa) {
    case Isa::generic:
      return generic_bf16_kernels();
#if defined(BERTCPU_X86)
    case Isa::avx512:
      if (!cpu_features().avx512_bf16)
        throw std::invalid_argument(
            "this CPU cannot run the avx512 bf16 kernels (they need AVX512_BF16)");
      return avx512_bf16_kernels();
#endif
    case Isa::amx:  // check_isa_supported() passed: the CPU and the OS allow AMX
      if (!amx_selection().bf16)
        throw std::invalid_argument("the amx bf16 kernels are disabled: " +
                                    amx_selection().warning);
      return *amx_selection().bf16;
#if defined(BERTCPU_ARM64)
    case Isa::i8mm:
      if (!cpu_features().bf16)
        throw std::invalid_argument(
            "this CPU cannot run the i8mm bf16 kernels (they need FEAT_BF16)");
      return neon_bf16_kernels();
#endif
    default:
      break;
  }
  throw std::invalid_argument(std::string("no bf16 kernels for the ") + isa_name(isa) +
                              " path (bf16 paths: generic, avx512, amx, i8mm)");
}

const Bf16Kernels& bf16_kernels(const std::string& name) {
  return table_named(bf16_tables(), name, "bf16", [](Isa isa) -> const Bf16Kernels& {
    return bf16_kernels(isa);
  });
}

const Int8Kernels& int8_kernels(Isa isa) {
  check_isa_supported(isa);
  switch (isa) {
    case Isa::generic:
      return generic_int8_kernels();
#if defined(BERTCPU_X86)
    case Isa::avx2:
      return cpu_features().avx_vnni ? avx_vnni_int8_kernels() : avx2_int8_kernels();
    case Isa::avx512:
      return cpu_features().avx512_vnni ? avx512_vnni_int8_kernels() : avx512bw_int8_kernels();
#endif
    case Isa::amx:
      if (!amx_selection().int8)
        throw std::invalid_argument("the amx int8 kernels are disabled: " +
                                    amx_selection().warning);
      return *amx_selection().int8;
#if defined(BERTCPU_ARM64)
    case Isa::dotprod:
      return dotprod_int8_kernels();
    case Isa::i8mm:
      return i8mm_int8_kernels();
#endif
    default:
      break;
  }
  throw std::invalid_argument(std::string("no int8 kernels for the ") + isa_name(isa) + " path");
}

const Int8Kernels& int8_kernels(const std::string& name) {
  return table_named(int8_tables(), name, "int8", [](Isa isa) -> const Int8Kernels& {
    return int8_kernels(isa);
  });
}

std::vector<std::string> bf16_kernel_names() { return runnable_names(bf16_tables()); }

std::vector<std::string> int8_kernel_names() { return runnable_names(int8_tables()); }

std::vector<Isa> bf16_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas)
    if (runs_bf16(isa)) out.push_back(isa);
  return out;
}

std::vector<Isa> int8_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas)
    if (runs_int8(isa)) out.push_back(isa);
  return out;
}

Isa best_bf16_isa(Isa cap) {
  Isa best = Isa::generic;
  for (Isa isa : bf16_isas())
    if (isa <= cap) best = isa;
  return best;
}

Isa best_int8_isa(Isa cap) {
  Isa best = Isa::generic;
  for (Isa isa : int8_isas())
    if (isa <= cap) best = isa;
  return best;
}

const AmxSelection& amx_selection() {
  static const AmxSelection selection = [] {
    AmxSelection out;
    const CpuFeatures& f = cpu_features();
    if (!runs_base(Isa::amx)) {
      if (f.amx_tile && f.amx_bf16 && f.amx_int8 && !f.amx_permitted)
        out.warning = std::string("the OS did not grant this process the AMX tile state (Linux "
                                  "arch_prctl(ARCH_REQ_XCOMP_PERM): ") +
                      std::strerror(f.amx_permission_errno) + "); the amx path is off";
      return out;
    }
    const AmxTestHook hook = amx_test_hook();
#if defined(BERTCPU_X86)
    const Bf16Kernels& bf16 =
        hook == AmxTestHook::none ? amx_bf16_kernels() : amx_model_bf16_kernels(Isa::amx);
    const Int8Kernels& int8 =
        hook == AmxTestHook::none ? amx_int8_kernels() : amx_model_int8_kernels(Isa::amx);
#else  // runs_base(Isa::amx) is false off x86
    const Bf16Kernels& bf16 = amx_model_bf16_kernels(Isa::amx);
    const Int8Kernels& int8 = amx_model_int8_kernels(Isa::amx);
#endif
    const std::string failure = lowp_self_test(bf16, int8, hook == AmxTestHook::model_wrong);
    if (failure.empty()) {
      out.bf16 = &bf16;
      out.int8 = &int8;
    } else {
      out.warning = "the AMX kernels failed their self-test (" + failure +
                    "); bf16 and int8 products run on the avx512 kernels instead";
    }
    return out;
  }();
  return selection;
}

// ---- bf16 ---------------------------------------------------------------------------------------

namespace {

// Where (k, column j of panel p) sits in a packed bf16 operand.
size_t bf16_index(int k_padded, int panels, int nr, int kgroup, int k, int p, int j) {
  const int k0 = k - k % kGemmKc;
  return strip_offset(k_padded, panels, nr, k0, p) +
         static_cast<size_t>(k - k0) / kgroup * kgroup * nr + kgroup * j + k % kgroup;
}

}  // namespace

void PackedLinearBf16::init(const Bf16Kernels& kt, int out, int in) {
  in_features = in;
  out_features = out;
  nr = kt.nr;
  kgroup = kt.kgroup;
  k_padded = ceil_div(in, k_alignment(kt)) * k_alignment(kt);
  bias.resize(static_cast<size_t>(ceil_div(out, nr)) * nr);
}

void PackedLinearBf16::pack_weight(const float* weight) {
  panels.resize(floats_for<bf16>(packed_size(k_padded, out_features, nr)));
  bf16* out = as<bf16>(panels);
  const int count = ceil_div(out_features, nr);
  for (int n = 0; n < out_features; ++n)
    for (int k = 0; k < in_features; ++k)
      out[bf16_index(k_padded, count, nr, kgroup, k, n / nr, n % nr)] =
          to_bf16(weight[static_cast<size_t>(n) * in_features + k]);
}

void PackedLinearBf16::set_bias(const float* values) {
  std::memcpy(bias.data(), values, out_features * sizeof(float));
}

void PackedLinearBf16::unpack_weight(float* weight) const {
  const bf16* packed = as<bf16>(panels);
  const int count = ceil_div(out_features, nr);
  for (int n = 0; n < out_features; ++n)
    for (int k = 0; k < in_features; ++k)
      weight[static_cast<size_t>(n) * in_features + k] =
          bf16_to_float(packed[bf16_index(k_padded, count, nr, kgroup, k, n / nr, n % nr)]);
}

Bf16Rows begin_rows_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M,
                         AlignedBuffer& scratch) {
  if (w.nr != kt.nr || w.kgroup != kt.kgroup || w.k_padded % k_alignment(kt) != 0)
    throw std::invalid_argument("weights packed for another bf16 kernel table");
  const int Kp = w.k_padded, rows = padded_rows(M);
  scratch.reserve(floats_for<bf16>(static_cast<size_t>(rows) * Kp));
  bf16* a = as<bf16>(scratch);
  // Zeros past row M first: in a pair-interleaved layout the last pair's chunks alternate with
  // those of row M - 1, which the conversion then writes.
  std::fill(a + static_cast<size_t>(M - M % 2) * Kp, a + static_cast<size_t>(rows) * Kp, bf16{0});
  return {a, Kp};
}

void convert_row_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, const Bf16Rows& a, int i,
                      const float* row) {
  kt.convert_row(row, w.in_features, a.k_padded,
                 a.rows + activation_offset(kt.a_pair_chunk, a.k_padded, i, 0));
}

Bf16Rows convert_rows_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const float* A,
                           int lda, AlignedBuffer& scratch, int max_threads) {
  const Bf16Rows a = begin_rows_bf16(kt, w, M, scratch);
  for_each_row(M, max_threads, [&](int i) {
    convert_row_bf16(kt, w, a, i, A + static_cast<size_t>(i) * lda);
  });
  return a;
}

void gemm_bf16_block(const Bf16Kernels& kt, const PackedLinearBf16& w, const Bf16Rows& a,
                     const GemmBlock& b, float* C, int ldc, const float* bias, Activation act) {
  const int Kp = a.k_padded, N = w.out_features, nr = kt.nr, mr = kt.mr;
  const int panels = ceil_div(N, nr);
  const bf16* packed = as<bf16>(w.panels);
  const BlockScope scope(kt);
  for (int k0 = 0; k0 < Kp; k0 += kGemmKc) {
    const int kc = std::min(kGemmKc, Kp - k0);
    const bool last = k0 + kc == Kp;
    const int flags = k0 > 0 ? kGemmAccumulate : 0;
    const Activation chunk_act = last ? act : Activation::none;
    // Row tile outer: its slice of A stays in L1 while the block's strips stream from L2.
    for (int i = b.m0; i < b.m1; i += mr) {
      for (int p = b.p0; p < b.p1; ++p) {
        const int col = (p - b.p0) * nr;
        kt.gemm_micro(kc, a.rows + activation_offset(kt.a_pair_chunk, Kp, i, k0), Kp,
                      packed + strip_offset(Kp, panels, nr, k0, p),
                      C + static_cast<size_t>(i - b.m0) * ldc + col, ldc, std::min(mr, b.m1 - i),
                      std::min(nr, N - p * nr), flags, (last && bias) ? bias + col : nullptr,
                      chunk_act);
      }
    }
  }
}

void linear_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const Bf16Rows& a,
                 float* C, int ldc, bool with_bias, Activation act, int max_threads) {
  run_blocks(kt, w, M, max_threads, C, ldc, with_bias, [&](const GemmBlock& b, float* c,
                                                           const float* bias) {
    gemm_bf16_block(kt, w, a, b, c, ldc, bias, act);
  });
}

void linear_bf16(const Bf16Kernels& kt, const PackedLinearBf16& w, int M, const float* A, int lda,
                 float* C, int ldc, bool with_bias, Activation act, AlignedBuffer& scratch,
                 int max_threads) {
  linear_bf16(kt, w, M, convert_rows_bf16(kt, w, M, A, lda, scratch, max_threads), C, ldc,
              with_bias, act, max_threads);
}

// ---- int8 ---------------------------------------------------------------------------------------

void PackedLinearInt8::init(const Int8Kernels& kt, int out, int in) {
  if (in > kInt8MaxK)
    throw std::invalid_argument("int8 GEMM: in_features above " + std::to_string(kInt8MaxK));
  in_features = in;
  out_features = out;
  nr = kt.nr;
  kgroup = kt.kgroup;
  k_padded = ceil_div(in, k_alignment(kt)) * k_alignment(kt);
  const size_t padded_out = static_cast<size_t>(ceil_div(out, nr)) * nr;
  bias.resize(padded_out);
  scales.resize(padded_out);
  compensation.resize(floats_for<int32_t>(padded_out));
}

void PackedLinearInt8::pack_weight(const float* weight, const float* input_range) {
  const size_t panel_bytes = static_cast<size_t>(k_padded) * nr;
  panels.resize(floats_for<int8_t>(ceil_div(out_features, nr) * panel_bytes));
  int8_t* out = as<int8_t>(panels);
  int32_t* comp = as<int32_t>(compensation);
  std::vector<float> divided;  // weight / input_scale, when there is one
  if (input_range) {
    input_scale.resize(in_features);
    float* t = input_scale.data();
    std::vector<float> column_max(in_features, 0.0f);
    for (int n = 0; n < out_features; ++n)
      for (int k = 0; k < in_features; ++k)
        column_max[k] =
            std::max(column_max[k], std::fabs(weight[static_cast<size_t>(n) * in_features + k]));
    for (int k = 0; k < in_features; ++k)
      t[k] = column_max[k] > 0.0f && input_range[k] > 0.0f
                 ? std::sqrt(column_max[k] / input_range[k])
                 : 1.0f;
    divided.resize(static_cast<size_t>(out_features) * in_features);
    for (size_t i = 0; i < divided.size(); ++i) divided[i] = weight[i] / t[i % in_features];
    weight = divided.data();
  }
  std::vector<int8_t> q(in_features);
  for (int n = 0; n < out_features; ++n) {
    scales.data()[n] = quantize_int8(weight + static_cast<size_t>(n) * in_features, in_features,
                                     q.data());
    int8_t* column = out + n / nr * panel_bytes + n % nr * kgroup;
    int32_t sum = 0;
    for (int k = 0; k < in_features; ++k) {
      column[packed_int8_offset(nr, kgroup, k)] = q[k];
      sum += q[k];
    }
    comp[n] = sum;
  }
}

void PackedLinearInt8::set_bias(const float* values) {
  std::memcpy(bias.data(), values, out_features * sizeof(float));
}

void PackedLinearInt8::unpack_weight(int8_t* weight, float* channel_scales) const {
  const size_t panel_bytes = static_cast<size_t>(k_padded) * nr;
  const int8_t* packed = as<int8_t>(panels);
  for (int n = 0; n < out_features; ++n) {
    const int8_t* column = packed + n / nr * panel_bytes + n % nr * kgroup;
    for (int k = 0; k < in_features; ++k)
      weight[static_cast<size_t>(n) * in_features + k] = column[packed_int8_offset(nr, kgroup, k)];
    channel_scales[n] = scales.data()[n];
  }
}

Int8Rows begin_rows_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M,
                         AlignedBuffer& scratch) {
  if (w.nr != kt.nr || w.kgroup != kt.kgroup || w.k_padded % k_alignment(kt) != 0)
    throw std::invalid_argument("weights packed for another int8 kernel table");
  const size_t row_bytes = static_cast<size_t>(w.k_padded);
  const int rows = padded_rows(M);
  // The row scales, zero points, top inputs and top values (M floats or int32 each) first, then
  // the quantized rows from a 64-byte boundary.
  const size_t head = static_cast<size_t>(ceil_div(4 * M, 16)) * 16;
  scratch.reserve(head + floats_for<uint8_t>(rows * row_bytes));
  float* h = scratch.data();
  uint8_t* a = reinterpret_cast<uint8_t*>(h + head);
  // Zeros past row M first (see begin_rows_bf16).
  std::fill(a + (M - M % 2) * row_bytes, a + rows * row_bytes, uint8_t{0});
  return {a, row_bytes, h, reinterpret_cast<int32_t*>(h + M), reinterpret_cast<int32_t*>(h + 2 * M),
          h + 3 * M};
}

void quantize_row_int8(const Int8Kernels& kt, const PackedLinearInt8& w, const Int8Rows& a, int i,
                       const float* row) {
  const int K = w.in_features, Kp = w.k_padded;
  if (w.input_scale.size() != 0) {  // quantize row * input_scale (a copy: the input stays as it is)
    thread_local std::vector<float> scaled;
    scaled.resize(K);
    const float* t = w.input_scale.data();
    for (int k = 0; k < K; ++k) scaled[k] = row[k] * t[k];
    row = scaled.data();
  }
  a.scale[i] = kt.quantize_row(row, K, Kp,
                               a.rows + activation_offset(kt.a_pair_chunk, Kp, i, 0),
                               a.zero + i, a.top + i, a.top_value + i);
}

Int8Rows quantize_rows_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const float* A,
                            int lda, AlignedBuffer& scratch, int max_threads) {
  const Int8Rows a = begin_rows_int8(kt, w, M, scratch);
  for_each_row(M, max_threads, [&](int i) {
    quantize_row_int8(kt, w, a, i, A + static_cast<size_t>(i) * lda);
  });
  return a;
}

void gemm_int8_block(const Int8Kernels& kt, const PackedLinearInt8& w, const Int8Rows& a,
                     const GemmBlock& b, float* C, int ldc, const float* bias, Activation act) {
  const int Kp = w.k_padded, N = w.out_features, nr = kt.nr, mr = kt.mr;
  const size_t panel_bytes = static_cast<size_t>(Kp) * nr;
  const int8_t* packed = as<int8_t>(w.panels);
  const int32_t* comp = as<int32_t>(w.compensation);
  const int lda = static_cast<int>(a.row_bytes);
  const BlockScope scope(kt);
  // Row tile outer: its quantized rows stay in L1 while the block's panels stream from L2.
  for (int i = b.m0; i < b.m1; i += mr) {
    const uint8_t* rows = a.rows + activation_offset(kt.a_pair_chunk, Kp, i, 0);
    for (int p = b.p0; p < b.p1; ++p) {
      const int col = (p - b.p0) * nr;
      kt.gemm_micro(Kp, rows, lda, packed + p * panel_bytes, comp + p * nr, a.scale + i,
                    a.zero + i, a.top + i, a.top_value + i, w.scales.data() + p * nr,
                    bias ? bias + col : nullptr,
                    C + static_cast<size_t>(i - b.m0) * ldc + col, ldc, std::min(mr, b.m1 - i),
                    std::min(nr, N - p * nr), act);
    }
  }
}

void linear_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const Int8Rows& a,
                 float* C, int ldc, bool with_bias, Activation act, int max_threads) {
  run_blocks(kt, w, M, max_threads, C, ldc, with_bias, [&](const GemmBlock& b, float* c,
                                                           const float* bias) {
    gemm_int8_block(kt, w, a, b, c, ldc, bias, act);
  });
}

void linear_int8(const Int8Kernels& kt, const PackedLinearInt8& w, int M, const float* A, int lda,
                 float* C, int ldc, bool with_bias, Activation act, AlignedBuffer& scratch,
                 int max_threads) {
  linear_int8(kt, w, M, quantize_rows_int8(kt, w, M, A, lda, scratch, max_threads), C, ldc,
              with_bias, act, max_threads);
}

}  // namespace bertcpu
