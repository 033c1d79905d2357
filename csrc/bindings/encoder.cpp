// _core.Encoder: build from a config dict, load tensors one at a time, run forward on numpy arrays
// with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>

#include "bindings/bindings.h"
#include "cpu/cpu_isa.h"
#include "encoder/encoder.h"

namespace py = pybind11;

namespace bertcpu {

namespace {

using IdArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

template <class T>
T required(const py::dict& config, const char* key) {
  if (!config.contains(key)) throw std::invalid_argument(std::string("config is missing '") + key + "'");
  try {
    return config[key].cast<T>();
  } catch (const py::cast_error&) {
    throw std::invalid_argument(std::string("config field '") + key + "' has the wrong type");
  }
}

Activation parse_activation(const std::string& name) {
  if (name == "gelu") return Activation::gelu_erf;
  if (name == "gelu_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  throw std::invalid_argument("unsupported hidden_act '" + name +
                              "' (supported: gelu, gelu_tanh, relu)");
}

EncoderConfig config_from_dict(const py::dict& d) {
  EncoderConfig c;
  c.hidden = required<int>(d, "hidden_size");
  c.layers = required<int>(d, "num_hidden_layers");
  c.heads = required<int>(d, "num_attention_heads");
  c.intermediate = required<int>(d, "intermediate_size");
  c.vocab = required<int>(d, "vocab_size");
  c.max_positions = required<int>(d, "max_position_embeddings");
  c.type_vocab = required<int>(d, "type_vocab_size");
  c.layer_norm_eps = required<float>(d, "layer_norm_eps");
  c.activation = parse_activation(required<std::string>(d, "hidden_act"));
  c.with_pooler = required<bool>(d, "with_pooler");
  return c;
}

IdArray as_ids(const py::handle& obj, const char* what) {
  IdArray a = IdArray::ensure(obj);
  if (!a) throw std::invalid_argument(std::string(what) + " must be an integer array");
  return a;
}

py::dict forward(Encoder& encoder, const py::handle& ids_obj, const py::handle& mask_obj,
                 const py::handle& types_obj, bool output_hidden_states, bool output_attentions) {
  IdArray ids = as_ids(ids_obj, "input_ids");
  IdArray mask = as_ids(mask_obj, "attention_mask");
  IdArray types = as_ids(types_obj, "token_type_ids");
  if (ids.ndim() != 2) throw std::invalid_argument("input_ids must have shape [batch, seq]");
  const py::ssize_t B = ids.shape(0), S = ids.shape(1);
  for (const auto& [a, name] : {std::pair<IdArray*, const char*>{&mask, "attention_mask"},
                                {&types, "token_type_ids"}})
    if (a->ndim() != 2 || a->shape(0) != B || a->shape(1) != S)
      throw std::invalid_argument(std::string(name) + " must have the shape of input_ids");
  if (B == 0 || S == 0) throw std::invalid_argument("input_ids is empty");
  if (B > INT32_MAX || S > INT32_MAX || B * S > INT32_MAX)
    throw std::invalid_argument("batch too large");

  const EncoderConfig& c = encoder.config();
  auto zeros = [](std::vector<py::ssize_t> shape) {
    py::array_t<float> a(shape);
    std::memset(a.mutable_data(), 0, a.nbytes());
    return a;
  };
  py::array_t<float> last = zeros({B, S, c.hidden});
  std::optional<py::array_t<float>> pooler;
  if (c.with_pooler) pooler = zeros({B, c.hidden});
  std::vector<py::array_t<float>> hidden, attentions;
  EncoderOutputs out{last.mutable_data(), pooler ? pooler->mutable_data() : nullptr, {}, {}};
  if (output_hidden_states)
    for (int l = 0; l <= c.layers; ++l) {
      hidden.push_back(zeros({B, S, c.hidden}));
      out.hidden_states.push_back(hidden.back().mutable_data());
    }
  if (output_attentions)
    for (int l = 0; l < c.layers; ++l) {
      attentions.push_back(zeros({B, c.heads, S, S}));
      out.attentions.push_back(attentions.back().mutable_data());
    }
  EncoderInputs in{ids.data(), mask.data(), types.data(), static_cast<int>(B), static_cast<int>(S)};
  {
    py::gil_scoped_release release;
    encoder.forward(in, out);
  }
  py::dict result;
  result["last_hidden_state"] = last;
  result["pooler_output"] = pooler ? py::object(*pooler) : py::none();
  result["hidden_states"] = output_hidden_states ? py::object(py::cast(hidden)) : py::none();
  result["attentions"] = output_attentions ? py::object(py::cast(attentions)) : py::none();
  return result;
}

}  // namespace

void bind_encoder(py::module_& m) {
  m.def(
      "best_dense_isa",
      [](const std::string& dtype, std::optional<std::string> isa) {
        const Isa cap = isa ? parse_isa(*isa) : default_isa();
        switch (parse_precision(dtype)) {
          case Precision::bfloat16:
            return std::string(isa_name(best_bf16_isa(cap)));
          case Precision::int8:
            return std::string(isa_name(best_int8_isa(cap)));
          case Precision::float32:
            break;
        }
        return std::string(isa_name(cap));
      },
      "The best path for the dense products of a `dtype` model whose fp32 path is `isa` (default: "
      "the CPU's best, capped by BERTCPU_ISA). 'generic' for bfloat16 / int8 means no CPU "
      "instructions for them: scalar code.",
      py::arg("dtype"), py::arg("isa") = py::none());
  py::class_<Encoder>(m, "Encoder",
                      "The BERT encoder on one fp32 kernel path; in a bfloat16 / int8 model the "
                      "dense products run on the low-precision kernels of dense_isa.")
      .def(py::init([](const py::dict& config, std::optional<std::string> isa,
                       const std::string& dtype, std::optional<std::string> dense_isa) {
             const Isa chosen = isa ? parse_isa(*isa) : default_isa();
             const Precision precision = parse_precision(dtype);
             Isa dense = chosen;
             if (dense_isa) {
               dense = parse_isa(*dense_isa);
             } else if (precision == Precision::bfloat16) {
               dense = best_bf16_isa(chosen);
             } else if (precision == Precision::int8) {
               dense = best_int8_isa(chosen);
             }
             return std::make_unique<Encoder>(config_from_dict(config), chosen, precision, dense);
           }),
           py::arg("config"), py::arg("isa") = py::none(), py::arg("dtype") = "float32",
           py::arg("dense_isa") = py::none())
      .def("expected_weights", &Encoder::expected_weights)
      .def("set_weight",
           [](Encoder& e, const std::string& name, const py::handle& obj) {
             FloatArray a = FloatArray::ensure(obj);
             if (!a) throw std::invalid_argument("tensor '" + name + "' must be a float array");
             std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
             e.set_weight(name, a.data(), shape);  // checks the shape before reading
           },
           py::arg("name"), py::arg("array"))
      .def("finalize", &Encoder::finalize)
      .def("get_weight",
           [](const Encoder& e, const std::string& name) {
             std::vector<int64_t> shape = e.weight_shape(name);
             py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
             e.get_weight(name, out.mutable_data());
             return out;
           },
           py::arg("name"))
      .def("forward", &forward, py::arg("input_ids"), py::arg("attention_mask"),
           py::arg("token_type_ids"), py::arg("output_hidden_states") = false,
           py::arg("output_attentions") = false)
      .def_property_readonly("isa", [](const Encoder& e) { return isa_name(e.isa()); })
      .def_property_readonly("dtype", [](const Encoder& e) { return precision_name(e.precision()); })
      .def_property_readonly("dense_isa", [](const Encoder& e) { return isa_name(e.dense_isa()); })
      .def_property_readonly("packed_bytes", &Encoder::packed_bytes);
}

}  // namespace bertcpu
