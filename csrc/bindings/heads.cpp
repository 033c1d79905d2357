// _core.VocabHead: the masked-LM head (encoder/vocab_head.h) on numpy arrays, GIL released.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>

#include "bindings/bindings.h"
#include "cpu/cpu_isa.h"
#include "encoder/vocab_head.h"

namespace py = pybind11;

namespace bertcpu {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

Activation head_activation(const std::string& name) {
  if (name == "gelu") return Activation::gelu_erf;
  if (name == "gelu_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  throw std::invalid_argument("unsupported activation '" + name + "' (gelu, gelu_tanh, relu)");
}

FloatArray float_array(const py::handle& obj, const char* what) {
  FloatArray a = FloatArray::ensure(obj);
  if (!a) throw std::invalid_argument(std::string(what) + " must be a float array");
  return a;
}

}  // namespace

void bind_heads(py::module_& m) {
  py::class_<VocabHead>(m, "VocabHead",
                        "The masked-LM head: transform (dense + activation + LayerNorm) and the "
                        "vocabulary projection, with SPLADE pooling fused into the projection.")
      .def(py::init([](int hidden, int vocab, const std::string& act, float eps,
                       std::optional<std::string> isa, const std::string& dtype) {
             const Isa chosen = isa ? parse_isa(*isa) : default_isa();
             const Precision precision = parse_precision(dtype);
             Isa dense = chosen;
             if (precision == Precision::bfloat16) dense = best_bf16_isa(chosen);
             if (precision == Precision::int8) dense = best_int8_isa(chosen);
             return std::make_unique<VocabHead>(hidden, vocab, head_activation(act), eps, chosen,
                                                precision, dense);
           }),
           py::arg("hidden_size"), py::arg("vocab_size"), py::arg("hidden_act"),
           py::arg("layer_norm_eps"), py::arg("isa") = py::none(), py::arg("dtype") = "float32")
      .def("expected_weights", &VocabHead::expected_weights)
      .def("set_weight",
           [](VocabHead& h, const std::string& name, const py::handle& obj) {
             FloatArray a = float_array(obj, "a head tensor");
             h.set_weight(name, a.data(), std::vector<int64_t>(a.shape(), a.shape() + a.ndim()));
           },
           py::arg("name"), py::arg("array"))
      .def("finalize", &VocabHead::finalize)
      .def("logits",
           [](const VocabHead& h, const py::handle& obj) {
             FloatArray x = float_array(obj, "hidden");
             if (x.ndim() != 2 || x.shape(1) != h.hidden())
               throw std::invalid_argument("hidden must have shape [rows, " +
                                           std::to_string(h.hidden()) + "]");
             if (x.shape(0) > INT32_MAX) throw std::invalid_argument("too many rows");
             const int rows = static_cast<int>(x.shape(0));
             py::array_t<float> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(h.vocab())});
             {
               py::gil_scoped_release release;
               h.logits(x.data(), rows, h.hidden(), out.mutable_data());
             }
             return out;
           },
           py::arg("hidden"),
           "[rows, hidden] encoder outputs -> [rows, vocab] logits.")
      .def("pool",
           [](const VocabHead& h, const py::handle& hidden_obj, const py::handle& mask_obj,
              const std::string& pooling, int log_steps) {
             FloatArray x = float_array(hidden_obj, "last_hidden_state");
             IdArray mask = IdArray::ensure(mask_obj);
             if (!mask) throw std::invalid_argument("attention_mask must be an integer array");
             if (x.ndim() != 3 || x.shape(2) != h.hidden())
               throw std::invalid_argument("last_hidden_state must have shape [batch, seq, " +
                                           std::to_string(h.hidden()) + "]");
             if (mask.ndim() != 2 || mask.shape(0) != x.shape(0) || mask.shape(1) != x.shape(1))
               throw std::invalid_argument("attention_mask must have shape [batch, seq]");
             if (x.shape(0) * x.shape(1) > INT32_MAX) throw std::invalid_argument("batch too large");
             VocabPooling mode;
             if (pooling == "max")
               mode = VocabPooling::max;
             else if (pooling == "sum")
               mode = VocabPooling::sum;
             else
               throw std::invalid_argument("pooling must be 'max' or 'sum', got '" + pooling + "'");
             const int batch = static_cast<int>(x.shape(0)), seq = static_cast<int>(x.shape(1));
             py::array_t<float> out({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(h.vocab())});
             {
               py::gil_scoped_release release;
               h.pool(x.data(), mask.data(), batch, seq, mode, log_steps, out.mutable_data());
             }
             return out;
           },
           py::arg("last_hidden_state"), py::arg("attention_mask"), py::arg("pooling") = "max",
           py::arg("log_steps") = 1,
           "SPLADE: [batch, seq, hidden] + mask -> [batch, vocab] of reduce_t log1p^steps(relu(logits)).")
      .def_property_readonly("isa", [](const VocabHead& h) { return isa_name(h.isa()); })
      .def_property_readonly("dtype", [](const VocabHead& h) { return precision_name(h.precision()); })
      .def_property_readonly("dense_isa", [](const VocabHead& h) { return isa_name(h.dense_isa()); })
      .def_property_readonly("packed_bytes", &VocabHead::packed_bytes);
}

}  // namespace bertcpu
