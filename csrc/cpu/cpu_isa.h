// CPU feature detection and the choice of kernel path (ISA).
//
// The extension is built for any x86-64 or aarch64; kernels for wider ISAs live in their own
// translation units and are only called after this module has confirmed the CPU (and the OS: XGETBV
// on x86, the kernel's or macOS's feature report on aarch64, cpu_isa_arm.cpp) supports them.
#pragma once

#include <string>
#include <vector>

#include "cpu/isa.h"

namespace bertcpu {

struct CpuFeatures {
  std::string vendor;
  std::string brand;
  bool avx2 = false, fma = false, f16c = false;
  bool avx_vnni = false;  // VEX vpdpbusd on ymm (an int8 table beside the avx2 path)
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_bf16 = false, avx512_vnni = false, avx512_fp16 = false;
  // CPUID with the tile state enabled in XCR0.
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  // Whether this process may use the tile data: Linux grants it on request only
  // (arch_prctl(ARCH_REQ_XCOMP_PERM), asked once at detection); other OSes by XCR0 alone.
  bool amx_permitted = false;
  int amx_permission_errno = 0;  // why Linux refused it
  // aarch64: Advanced SIMD, SDOT/UDOT (FEAT_DotProd), SMMLA/USMMLA (FEAT_I8MM), BFMMLA/BFDOT
  // (FEAT_BF16).
  bool neon = false, dotprod = false, i8mm = false, bf16 = false;
};

// Fills the aarch64 fields (and vendor/brand) from the OS; defined in cpu_isa_arm.cpp, on aarch64
// only.
void detect_arm_features(CpuFeatures& f);

// The named flags of CpuFeatures, in cpu_info()'s order (its "features" lists the set ones).
struct FeatureFlag {
  const char* name;
  bool CpuFeatures::*flag;
};
const std::vector<FeatureFlag>& feature_flags();

// What the CPU and the OS offer, detected once. Test hook, read then from
// BERTCPU_TEST_HIDE_FEATURES: the comma-separated feature_flags() names listed count as absent,
// so that the path choices of CPUs without them run here (AVX-512 without VNNI and BF16, as on
// Skylake-SP; without BF16, as on Ice Lake). An unknown name throws std::invalid_argument.
const CpuFeatures& cpu_features();

// Test hook, read once from BERTCPU_TEST_AMX_MODEL: "1" stands the AMX tile model (the amx_model
// kernel tables, plain C++) in for the AMX instructions on a CPU with the avx512 path, so that the
// amx path's selection, self-test and fallback run on CPUs without AMX; "wrong" also makes the
// self-test see a wrong answer (a CPU whose AMX miscomputes). Unset ("0"): the real instructions.
enum class AmxTestHook { none, model, model_wrong };
AmxTestHook amx_test_hook();

const char* isa_name(Isa isa);
// Parses a path name (isa_name() of any Isa); throws std::invalid_argument otherwise.
Isa parse_isa(const std::string& name);
// Every path this CPU can run, lowest first.
std::vector<Isa> available_isas();
// The best available path, capped by BERTCPU_ISA when set. Throws std::invalid_argument if the
// variable names an unknown path or one this CPU cannot run. Read at each call (i.e. at model load).
Isa default_isa();
// Throws std::invalid_argument if this CPU cannot run `isa`.
void check_isa_supported(Isa isa);

}  // namespace bertcpu
