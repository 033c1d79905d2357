// _core.kernels: each kernel on a chosen ISA path, for the tests that compare every path with
// numpy (the way the encoder calls them: same packing, same drivers).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

#include "bindings/bindings.h"
#include "cpu/cpu_isa.h"
#include "encoder/attention.h"
#include "cpu/thread_pool.h"
#include "kernels/gemm.h"
#include "kernels/gemm_lowp.h"

namespace py = pybind11;

namespace bertcpu {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

const KernelTable& table(const std::optional<std::string>& isa) {
  return kernel_table(isa ? parse_isa(*isa) : default_isa());
}

Activation activation_from_name(const std::string& name) {
  if (name == "none") return Activation::none;
  if (name == "gelu") return Activation::gelu_erf;
  if (name == "gelu_rational") return Activation::gelu_erf_rational;
  if (name == "gelu_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  if (name == "tanh") return Activation::tanh;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

void require_2d(const FloatArray& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
}

// A weight matrix packed once for one precision ("fp32", "bf16", "int8") and path: what the
// low-precision tests and bench/bench_gemm.py call (the GEMM alone, without packing).
class PackedWeight {
 public:
  PackedWeight(const FloatArray& w, const std::optional<FloatArray>& bias,
               const std::string& precision, const std::optional<std::string>& isa)
      : precision_(precision), with_bias_(bias.has_value()) {
    require_2d(w, "w");
    const int N = w.shape(0), K = w.shape(1);
    if (N == 0 || K == 0) throw std::invalid_argument("w must not be empty");
    if (bias && (bias->ndim() != 1 || bias->shape(0) != N))
      throw std::invalid_argument("bias must be [N]");
    if (precision == "int8") {
      // isa names an int8 kernel table here (int8_kernels(name)), not only an fp32 path.
      int8_ = isa ? &int8_kernels(*isa) : &int8_kernels(best_int8_isa(default_isa()));
      isa_ = int8_->name;
      int8_w_.init(*int8_, N, K);
      int8_w_.pack_weight(w.data());
      if (bias) int8_w_.set_bias(bias->data());
      in_ = K;
      out_ = N;
      return;
    }
    if (precision == "bf16") {
      // Like int8: isa names a bf16 kernel table (bf16_kernels(name)) or a path.
      bf16_ = isa ? &bf16_kernels(*isa) : &bf16_kernels(best_bf16_isa(default_isa()));
      isa_ = bf16_->name;
      bf16_w_.init(*bf16_, N, K);
      bf16_w_.pack_weight(w.data());
      if (bias) bf16_w_.set_bias(bias->data());
      in_ = K;
      out_ = N;
      return;
    }
    const Isa cap = isa ? parse_isa(*isa) : default_isa();
    if (precision == "fp32") {
      fp32_ = &kernel_table(cap);
      isa_ = isa_name(fp32_->isa);
      fp32_w_.init(fp32_->nr, N, K);
      fp32_w_.pack_weight(w.data());
      if (bias) fp32_w_.set_bias(bias->data());
    } else {
      throw std::invalid_argument("unknown precision '" + precision +
                                  "': expected fp32, bf16 or int8");
    }
    in_ = K;
    out_ = N;
  }

  py::array_t<float> run(const FloatArray& x, const std::string& act, int repeats) {
    require_2d(x, "x");
    if (x.shape(1) != in_) throw std::invalid_argument("x must be [M, K] with w [N, K]");
    if (repeats < 1) throw std::invalid_argument("repeats must be positive");
    const Activation activation = activation_from_name(act);
    const int M = x.shape(0);
    py::array_t<float> out({M, out_});
    float* C = out.mutable_data();
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);  // scratch_ is shared by the calls
    for (int r = 0; r < repeats; ++r) {
      if (fp32_)
        linear(*fp32_, fp32_w_, M, x.data(), in_, C, out_, with_bias_, activation);
      else if (bf16_)
        linear_bf16(*bf16_, bf16_w_, M, x.data(), in_, C, out_, with_bias_, activation, scratch_);
      else
        linear_int8(*int8_, int8_w_, M, x.data(), in_, C, out_, with_bias_, activation, scratch_);
    }
    return out;
  }

  // The weight the kernels multiply by, as fp32 [N, K]: itself, its bf16 rounding, or q * scale.
  py::array_t<float> weight() const {
    py::array_t<float> out({out_, in_});
    float* w = out.mutable_data();
    if (fp32_) {
      fp32_w_.unpack_weight(w);
    } else if (bf16_) {
      bf16_w_.unpack_weight(w);
    } else {
      auto [q, scales] = int8_weight();
      const int8_t* qd = q.data();
      for (py::ssize_t i = 0; i < q.size(); ++i)
        w[i] = static_cast<float>(qd[i]) * scales.data()[i / in_];
    }
    return out;
  }

  // int8 only: the quantized weight [N, K] and its per-channel scales [N].
  std::pair<py::array_t<int8_t>, py::array_t<float>> int8_weight() const {
    if (!int8_) throw std::invalid_argument("int8_weight() needs precision int8");
    py::array_t<int8_t> q({out_, in_});
    py::array_t<float> scales(out_);
    int8_w_.unpack_weight(q.mutable_data(), scales.mutable_data());
    return {q, scales};
  }

  const std::string& precision() const { return precision_; }
  const std::string& isa() const { return isa_; }

 private:
  std::string precision_;
  bool with_bias_;
  int in_ = 0, out_ = 0;
  std::string isa_;  // the fp32 path, or the bf16 / int8 kernel table's name
  const KernelTable* fp32_ = nullptr;
  const Bf16Kernels* bf16_ = nullptr;
  const Int8Kernels* int8_ = nullptr;
  PackedLinear fp32_w_;
  PackedLinearBf16 bf16_w_;
  PackedLinearInt8 int8_w_;
  AlignedBuffer scratch_;
  std::mutex mutex_;
};

}  // namespace

void bind_kernels(py::module_& m) {
  m.def(
      "lowp_isas",
      [] {
        py::dict out;
        out["bf16"] = bf16_kernel_names();
        out["int8"] = int8_kernel_names();
        return out;
      },
      "The bf16 and int8 kernel tables this CPU can run, by name, lowest first. bf16: generic, "
      "amx_model (the AMX kernels over a scalar model of the tile instructions: every CPU), "
      "avx512 (AVX512_BF16), amx (AMX-BF16), i8mm (BFMMLA). int8: generic, amx_model, avx2 "
      "(vpmaddubsw, activations 0..127), avxvnni (AVX-VNNI, ymm), avx512vnni_ymm (the avxvnni "
      "kernel EVEX-encoded, for tests), avx512 (AVX512_VNNI, zmm), amx (AMX-INT8), dotprod, "
      "i8mm.");

  m.def(
      "self_test",
      [](const std::string& name) {
        py::gil_scoped_release release;
#if defined(BERTCPU_X86)
        // The real AMX tables even where the CPU or OS refuses them: then the self-test meets the
        // illegal instruction, which it must survive.
        if (name == "amx") return lowp_self_test(amx_bf16_kernels(), amx_int8_kernels());
#endif
        return lowp_self_test(bf16_kernels(name), int8_kernels(name));
      },
      py::arg("name"),
      "The known-answer self-test of the bf16 and int8 tables called `name` (the one the amx "
      "path runs at first use): '' if they pass, else what failed. 'amx' runs the real AMX "
      "instructions whether or not this CPU has them (a SIGILL is caught and reported).");

  py::class_<PackedWeight>(m, "PackedWeight",
                           "A weight [N, K] packed once for one precision and kernel path.")
      .def(py::init<const FloatArray&, const std::optional<FloatArray>&, const std::string&,
                    const std::optional<std::string>&>(),
           py::arg("w"), py::arg("bias") = py::none(), py::arg("precision") = "fp32",
           py::arg("isa") = py::none(),
           "precision: fp32, bf16 or int8. isa: the path (ValueError if this CPU cannot run it "
           "or it has no kernels of that precision); default: the best one at or below the "
           "engine's default path.")
      .def("run", &PackedWeight::run, py::arg("x"), py::arg("activation") = "none",
           py::arg("repeats") = 1,
           "act(x @ w.T + bias) through the threaded GEMM, computed `repeats` times (timing).")
      .def("weight", &PackedWeight::weight, "The weight the kernels multiply by, as float32.")
      .def("int8_weight", &PackedWeight::int8_weight,
           "(int8 weight [N, K], float32 per-channel scales [N]); int8 only. The weight is "
           "quantized symmetrically per output channel (scale = max|w| / 127).")
      .def_property_readonly("precision", &PackedWeight::precision)
      .def_property_readonly("isa", &PackedWeight::isa);

  m.def(
      "quantize_activations",
      [](const FloatArray& x, const std::optional<std::string>& isa) {
        require_2d(x, "x");
        const Int8Kernels& kt =
            isa ? int8_kernels(*isa) : int8_kernels(best_int8_isa(default_isa()));
        const int M = x.shape(0), K = x.shape(1);
        if (K == 0) throw std::invalid_argument("rows must not be empty");
        const int Kp = ceil_div(K, kt.kgroup) * kt.kgroup;
        // Room for a row of a pair-interleaved layout too: its chunks are a chunk apart.
        std::vector<uint8_t> row(2 * static_cast<size_t>(Kp));
        py::array_t<int32_t> q({M, Kp});
        py::array_t<float> scales(M);
        py::array_t<int32_t> zero_points(M), tops(M);
        py::array_t<float> top_values(M);
        for (int i = 0; i < M; ++i) {
          scales.mutable_data()[i] = kt.quantize_row(
              x.data() + static_cast<size_t>(i) * K, K, Kp, row.data(),
              zero_points.mutable_data() + i, tops.mutable_data() + i,
              top_values.mutable_data() + i);
          int32_t* out = q.mutable_data() + static_cast<size_t>(i) * Kp;
          for (int k = 0; k < Kp; ++k) {
            const uint8_t value = row[activation_offset(kt.a_pair_chunk, 0, 0, k)];
            out[k] = kt.a_offset != 0 ? static_cast<int8_t>(value) + kt.a_offset : value;
          }
        }
        return py::make_tuple(q, scales, zero_points, tops, top_values);
      },
      py::arg("x"), py::arg("isa") = py::none(),
      "(q [M, Kp] as int32, scales [M], zero points [M], top inputs [M], top values [M]): the "
      "int8 path's per-row activation quantization of x [M, K] (Int8Kernels::quantize_row: each "
      "row's largest |x| kept out), K padded to the path's K group.");

  m.def(
      "int8_activation_max",
      [](const std::optional<std::string>& isa) {
        return (isa ? int8_kernels(*isa) : int8_kernels(best_int8_isa(default_isa()))).a_max;
      },
      py::arg("isa") = py::none(),
      "The largest activation code of the int8 path (quantize_activations' q <= it): 255, or 127 "
      "on avx2 and avx512bw, whose vpmaddubsw pair sums would saturate at 8 bits.");

  for (const char* precision : {"bf16", "int8"}) {
    m.def(
        (std::string("linear_") + precision).c_str(),
        [precision](const FloatArray& x, const FloatArray& w, const std::optional<FloatArray>& bias,
                    const std::string& act, const std::optional<std::string>& isa) {
          return PackedWeight(w, bias, precision, isa).run(x, act, 1);
        },
        py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("activation") = "none",
        py::arg("isa") = py::none(),
        (std::string("act(x @ w.T + bias) through the packed, threaded ") + precision +
         " GEMM (packs w at each call).")
            .c_str());
  }

  m.def(
      "linear",
      [](FloatArray x, FloatArray w, std::optional<FloatArray> bias, const std::string& act,
         std::optional<std::string> isa) {
        require_2d(x, "x");
        require_2d(w, "w");
        const int M = x.shape(0), K = x.shape(1), N = w.shape(0);
        if (w.shape(1) != K) throw std::invalid_argument("w must be [N, K] with x [M, K]");
        if (bias && (bias->ndim() != 1 || bias->shape(0) != N))
          throw std::invalid_argument("bias must be [N]");
        const KernelTable& kt = table(isa);
        PackedLinear packed;
        packed.init(kt.nr, N, K);
        packed.pack_weight(w.data());
        if (bias) packed.set_bias(bias->data());
        py::array_t<float> out({M, N});
        {
          py::gil_scoped_release release;
          linear(kt, packed, M, x.data(), K, out.mutable_data(), N, bias.has_value(),
                 activation_from_name(act));
        }
        return out;
      },
      py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("activation") = "none",
      py::arg("isa") = py::none(), "act(x @ w.T + bias) through the packed, threaded GEMM.");

  m.def(
      "activation",
      [](FloatArray x, const std::string& act, std::optional<std::string> isa) {
        const KernelTable& kt = table(isa);
        py::array_t<float> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        kt.activation(x.data(), out.mutable_data(), static_cast<int>(x.size()),
                      activation_from_name(act));
        return out;
      },
      py::arg("x"), py::arg("activation"), py::arg("isa") = py::none());

  m.def(
      "add_layernorm",
      [](FloatArray x, std::optional<FloatArray> add1, std::optional<FloatArray> add2,
         FloatArray gamma, FloatArray beta, float eps, std::optional<std::string> isa) {
        require_2d(x, "x");
        const int rows = x.shape(0), n = x.shape(1);
        for (const auto* a : {&add1, &add2})
          if (*a && ((*a)->ndim() != 2 || (*a)->shape(0) != rows || (*a)->shape(1) != n))
            throw std::invalid_argument("addends must have the shape of x");
        if (gamma.size() != n || beta.size() != n)
          throw std::invalid_argument("gamma and beta must have x.shape[1] entries");
        const KernelTable& kt = table(isa);
        py::array_t<float> out({rows, n});
        for (int r = 0; r < rows; ++r) {
          const size_t at = static_cast<size_t>(r) * n;
          kt.add_layernorm(x.data() + at, add1 ? add1->data() + at : nullptr,
                           add2 ? add2->data() + at : nullptr, gamma.data(), beta.data(), eps,
                           out.mutable_data() + at, n);
        }
        return out;
      },
      py::arg("x"), py::arg("add1"), py::arg("add2"), py::arg("gamma"), py::arg("beta"),
      py::arg("eps"), py::arg("isa") = py::none(), "Row-wise LayerNorm(x + add1 + add2).");

  m.def(
      "softmax",
      [](FloatArray x, float scale, std::optional<std::string> isa) {
        require_2d(x, "x");
        if (x.shape(1) == 0) throw std::invalid_argument("rows must not be empty");
        const KernelTable& kt = table(isa);
        py::array_t<float> out({x.shape(0), x.shape(1)});
        std::memcpy(out.mutable_data(), x.data(), x.nbytes());
        for (py::ssize_t r = 0; r < x.shape(0); ++r) {
          float* row = out.mutable_data() + r * x.shape(1);
          const float inv = 1.0f / kt.softmax_numerators(row, x.shape(1), scale);
          for (py::ssize_t j = 0; j < x.shape(1); ++j) row[j] *= inv;
        }
        return out;
      },
      py::arg("x"), py::arg("scale") = 1.0f, py::arg("isa") = py::none(),
      "Row-wise softmax(scale * x).");

  m.def(
      "attention",
      [](FloatArray qkv, const std::vector<int>& lengths, int heads,
         std::optional<std::string> isa, std::optional<std::string> bf16) {
        require_2d(qkv, "qkv");
        if (qkv.shape(1) % 3 != 0) throw std::invalid_argument("qkv must be [tokens, 3 * hidden]");
        const int hidden = qkv.shape(1) / 3;
        if (heads <= 0 || hidden % heads != 0)
          throw std::invalid_argument("heads must divide the hidden size");
        SequenceLayout layout;
        int total = 0;
        for (int len : lengths) {
          if (len <= 0) throw std::invalid_argument("lengths must be positive");
          layout.offsets.push_back(total);
          layout.lengths.push_back(len);
          layout.max_length = std::max(layout.max_length, len);
          total += len;
        }
        if (total != qkv.shape(0)) throw std::invalid_argument("lengths must sum to qkv rows");
        const KernelTable& kt = table(isa);
        const Bf16Kernels* bt = bf16 ? &bf16_kernels(*bf16) : nullptr;
        if (bt && !attention_runs_on(*bt, kt))
          throw std::invalid_argument("attention cannot run on the " + *bf16 +
                                      " bf16 kernels beside the " + std::string(isa_name(kt.isa)) +
                                      " path");
        py::array_t<float> ctx({total, hidden});
        {
          py::gil_scoped_release release;
          const int threads = get_num_threads();
          AttentionWorkspace workspace;
          multi_head_attention(kt, bt, qkv.data(), 3 * hidden, hidden, heads, layout,
                               ctx.mutable_data(), hidden, {}, workspace, threads);
        }
        return ctx;
      },
      py::arg("qkv"), py::arg("lengths"), py::arg("heads"), py::arg("isa") = py::none(),
      py::arg("bf16") = py::none(),
      "Per-sequence multi-head attention over token-major [q | k | v] rows; bf16 names a bf16 "
      "kernel table for its two products (as bfloat16 and int8 models run them).");
}

}  // namespace bertcpu
