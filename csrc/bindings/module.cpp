// bertcpu._core: the engine's Python face. One file per exposed feature; no Python types below
// this folder.
#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "bertcpu's C++ engine: BERT encoder, SIMD kernels, CPU dispatch, thread pool";
  bertcpu::bind_runtime(m);
  bertcpu::bind_encoder(m);
  bertcpu::bind_heads(m);
  auto kernels = m.def_submodule("kernels", "Kernels exposed for testing against numpy");
  bertcpu::bind_kernels(kernels);
}
