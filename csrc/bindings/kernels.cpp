// _core.kernels: each kernel on a chosen ISA path, for the tests that compare every path with
// numpy (the way the encoder calls them: same packing, same drivers).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>

#include "bindings/bindings.h"
#include "cpu/cpu_isa.h"
#include "encoder/attention.h"
#include "cpu/thread_pool.h"
#include "kernels/gemm.h"

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
  if (name == "gelu_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  if (name == "tanh") return Activation::tanh;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

void require_2d(const FloatArray& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
}

}  // namespace

void bind_kernels(py::module_& m) {
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
        for (py::ssize_t r = 0; r < x.shape(0); ++r)
          kt.softmax(out.mutable_data() + r * x.shape(1), x.shape(1), scale);
        return out;
      },
      py::arg("x"), py::arg("scale") = 1.0f, py::arg("isa") = py::none(),
      "Row-wise softmax(scale * x).");

  m.def(
      "attention",
      [](FloatArray qkv, const std::vector<int>& lengths, int heads,
         std::optional<std::string> isa) {
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
        py::array_t<float> ctx({total, hidden});
        {
          py::gil_scoped_release release;
          const int threads = get_num_threads();
          std::vector<AttentionScratch> scratch(threads);
          multi_head_attention(kt, qkv.data(), hidden, heads, layout, ctx.mutable_data(), {},
                               scratch, threads);
        }
        return ctx;
      },
      py::arg("qkv"), py::arg("lengths"), py::arg("heads"), py::arg("isa") = py::none(),
      "Per-sequence multi-head attention over token-major [q | k | v] rows.");
}

}  // namespace bertcpu
