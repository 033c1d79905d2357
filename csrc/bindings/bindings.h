// Registration functions of the pybind11 module, one per binding file.
#pragma once

#include <pybind11/pybind11.h>

namespace bertcpu {

void bind_runtime(pybind11::module_& m);
void bind_encoder(pybind11::module_& m);
void bind_kernels(pybind11::module_& m);
void bind_heads(pybind11::module_& m);

}  // namespace bertcpu
