#include "cpu/cpu_isa.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(BERTCPU_X86)
#include <cpuid.h>
#endif
#if defined(BERTCPU_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace bertcpu {

namespace {

#if defined(BERTCPU_X86)
// XCR0 via XGETBV, written as raw bytes so this file needs no -mxsave.
unsigned long long read_xcr0() {
  unsigned eax, edx;
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

// Asks Linux for the AMX tile data state (XFEATURE_XTILEDATA, 18), which it grants a process only
// on request: 0 if granted, else errno. Elsewhere XCR0 alone says whether the OS saves the state.
int request_amx_permission() {
#if defined(__linux__)
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0 ? 0 : errno;
#else
  return 0;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  char vendor[13];
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  vendor[12] = 0;
  f.vendor = vendor;

  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    char brand[49] = {0};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002 + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    f.brand = brand;
    const auto first = f.brand.find_first_not_of(' ');
    f.brand = first == std::string::npos ? "" : f.brand.substr(first);
  }

  __get_cpuid(1, &a, &b, &c, &d);
  const bool osxsave = c & (1u << 27);
  const bool has_fma = c & (1u << 12);
  const bool has_f16c = c & (1u << 29);
  const bool has_avx = c & (1u << 28);
  if (!osxsave || !has_avx) return f;
  const unsigned long long xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM state
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;    // XTILECFG + XTILEDATA
  if (!os_ymm || max_leaf < 7) return f;

  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_subleaf = a;
  f.fma = has_fma;
  f.f16c = has_f16c;
  f.avx2 = b & (1u << 5);
  if (os_zmm) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512_vnni = c & (1u << 11);
    f.avx512_fp16 = d & (1u << 23);
  }
  if (os_amx) {
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    f.amx_int8 = d & (1u << 25);
    if (f.amx_tile) {
      f.amx_permission_errno = request_amx_permission();
      f.amx_permitted = f.amx_permission_errno == 0;
    }
  }
  if (max_subleaf >= 1) {  // leaf 7 subleaf 1 (AVX-VNNI, AVX512_BF16) exists
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = a & (1u << 4);
    if (os_zmm) f.avx512_bf16 = a & (1u << 5);
  }
  return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
  CpuFeatures f;
  detect_arm_features(f);
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

bool supports(const CpuFeatures& f, Isa isa) {
  switch (isa) {
    case Isa::generic:
      return true;
    case Isa::avx2:
      return f.avx2 && f.fma && f.f16c;
    case Isa::avx512:
      return f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.fma && f.f16c;
    case Isa::amx:  // AMX CPUs have AVX512_BF16 and AVX512_VNNI: the row formats of its kernels
      return supports(f, Isa::avx512) && f.avx512_bf16 && f.avx512_vnni &&
             ((f.amx_tile && f.amx_bf16 && f.amx_int8 && f.amx_permitted) ||
              amx_test_hook() != AmxTestHook::none);
    case Isa::neon:
      return f.neon;
    case Isa::dotprod:
      return f.neon && f.dotprod;
    case Isa::i8mm:
      return f.neon && f.dotprod && f.i8mm;
  }
  return false;
}

// detect()'s features less those BERTCPU_TEST_HIDE_FEATURES names (see cpu_features()).
CpuFeatures hide_listed(CpuFeatures f) {
  const char* listed = std::getenv("BERTCPU_TEST_HIDE_FEATURES");
  if (listed == nullptr) return f;
  std::string rest = listed;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string name = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    if (name.empty()) continue;
    const std::vector<FeatureFlag>& flags = feature_flags();
    const auto match = std::find_if(flags.begin(), flags.end(),
                                    [&](const FeatureFlag& flag) { return name == flag.name; });
    if (match == flags.end()) {
      std::string known;
      for (const FeatureFlag& flag : flags)
        known += (known.empty() ? "" : ", ") + std::string(flag.name);
      throw std::invalid_argument("BERTCPU_TEST_HIDE_FEATURES: unknown feature '" + name +
                                  "' (features: " + known + ")");
    }
    f.*(match->flag) = false;
  }
  return f;
}

}  // namespace

const std::vector<FeatureFlag>& feature_flags() {
  static const std::vector<FeatureFlag> flags = {
      {"avx2", &CpuFeatures::avx2},
      {"fma", &CpuFeatures::fma},
      {"f16c", &CpuFeatures::f16c},
      {"avx_vnni", &CpuFeatures::avx_vnni},
      {"avx512f", &CpuFeatures::avx512f},
      {"avx512bw", &CpuFeatures::avx512bw},
      {"avx512dq", &CpuFeatures::avx512dq},
      {"avx512vl", &CpuFeatures::avx512vl},
      {"avx512_bf16", &CpuFeatures::avx512_bf16},
      {"avx512_vnni", &CpuFeatures::avx512_vnni},
      {"avx512_fp16", &CpuFeatures::avx512_fp16},
      {"amx_tile", &CpuFeatures::amx_tile},
      {"amx_bf16", &CpuFeatures::amx_bf16},
      {"amx_int8", &CpuFeatures::amx_int8},
      {"neon", &CpuFeatures::neon},
      {"dotprod", &CpuFeatures::dotprod},
      {"i8mm", &CpuFeatures::i8mm},
      {"bf16", &CpuFeatures::bf16}};
  return flags;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = hide_listed(detect());
  return features;
}

AmxTestHook amx_test_hook() {
  static const AmxTestHook hook = [] {
    const char* value = std::getenv("BERTCPU_TEST_AMX_MODEL");
    if (value == nullptr || *value == 0 || std::strcmp(value, "0") == 0) return AmxTestHook::none;
    return std::strcmp(value, "wrong") == 0 ? AmxTestHook::model_wrong : AmxTestHook::model;
  }();
  return hook;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic:
      return "generic";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::amx:
      return "amx";
    case Isa::neon:
      return "neon";
    case Isa::dotprod:
      return "dotprod";
    case Isa::i8mm:
      return "i8mm";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : kAllIsas)
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown ISA '" + name +
                              "': expected one of generic, avx2, avx512, amx, neon, dotprod, i8mm");
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas)
    if (supports(cpu_features(), isa)) out.push_back(isa);
  return out;
}

void check_isa_supported(Isa isa) {
  if (!supports(cpu_features(), isa))
    throw std::invalid_argument(std::string("this CPU cannot run the ") + isa_name(isa) +
                                " kernels (available: " +
                                isa_name(available_isas().back()) + " and below)");
}

Isa default_isa() {
  const Isa best = available_isas().back();
  const char* forced = std::getenv("BERTCPU_ISA");
  if (forced == nullptr || *forced == 0) return best;
  Isa isa;
  try {
    isa = parse_isa(forced);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("BERTCPU_ISA: ") + e.what());
  }
  if (!supports(cpu_features(), isa))
    throw std::invalid_argument(std::string("BERTCPU_ISA=") + forced +
                                " but this CPU supports at most " + isa_name(best));
  return isa;
}

}  // namespace bertcpu
