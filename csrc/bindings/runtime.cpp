// cpu_info(), and the thread count.
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "cpu/cpu_isa.h"
#include "cpu/thread_pool.h"
#include "kernels/gemm_lowp.h"

namespace py = pybind11;

namespace bertcpu {

void bind_runtime(py::module_& m) {
  m.def("cpu_info", [] {
    const CpuFeatures& f = cpu_features();
    py::list features;
    for (const FeatureFlag& flag : feature_flags())
      if (f.*(flag.flag)) features.append(flag.name);
    py::list available;
    for (Isa isa : available_isas()) available.append(isa_name(isa));
    py::dict info;
    info["vendor"] = f.vendor;
    info["brand"] = f.brand;
    info["features"] = features;
    info["available_isas"] = available;
    const char* forced = std::getenv("BERTCPU_ISA");
    info["isa_forced"] = forced != nullptr && *forced != 0;
    const Isa isa = default_isa();
    info["isa"] = isa_name(isa);
    // The low-precision dense kernels (BertModel dtype=...): every path, and the one a model on
    // `isa` uses. "generic" alone means no instructions for them: such models run float32.
    auto names = [](const std::vector<Isa>& isas) {
      py::list out;
      for (Isa i : isas) out.append(isa_name(i));
      return out;
    };
    info["bfloat16_isas"] = names(bf16_isas());
    info["int8_isas"] = names(int8_isas());
    info["bfloat16_isa"] = isa_name(best_bf16_isa(isa));
    info["int8_isa"] = isa_name(best_int8_isa(isa));
    info["bfloat16_kernels"] = bf16_kernels(best_bf16_isa(isa)).name;
    info["int8_kernels"] = int8_kernels(best_int8_isa(isa)).name;  // e.g. avxvnni beside avx2
    // AMX: whether the amx path's tile kernels run (CPU, OS and self-test), and if the CPU has AMX
    // but they do not, why.
    info["amx_usable"] = amx_selection().bf16 != nullptr;
    info["amx_warning"] = amx_selection().warning;
    info["num_threads"] = get_num_threads();
    return info;
  }, "What the CPU offers and which kernel path runs (raises ValueError for a bad BERTCPU_ISA).");
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
}

}  // namespace bertcpu
