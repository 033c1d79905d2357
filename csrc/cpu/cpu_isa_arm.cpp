// aarch64 feature detection, from the OS: user space cannot read the ID registers portably (Linux
// traps and emulates them, macOS does not), and the OS also knows what it has enabled.
// Linux: the kernel's hardware capability bits (getauxval). macOS: sysctl hw.optional.*.
#if defined(__aarch64__)

#include <cstdio>
#include <cstring>
#include <string>

#include "cpu/cpu_isa.h"

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#elif defined(__linux__)
#include <sys/auxv.h>
#endif

namespace bertcpu {

namespace {

#if defined(__APPLE__)
bool sysctl_flag(const char* name) {
  int value = 0;
  size_t size = sizeof value;
  return sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
}

std::string sysctl_string(const char* name) {
  char buffer[128] = {0};
  size_t size = sizeof buffer - 1;
  return sysctlbyname(name, buffer, &size, nullptr, 0) == 0 ? std::string(buffer) : std::string();
}
#elif defined(__linux__)
// Bits of AT_HWCAP / AT_HWCAP2 (Linux arch/arm64/include/uapi/asm/hwcap.h), spelled out so an old
// libc's headers do not matter.
constexpr unsigned long kHwcapAsimd = 1ul << 1;
constexpr unsigned long kHwcapAsimdDp = 1ul << 20;
constexpr unsigned long kHwcap2I8mm = 1ul << 13;
constexpr unsigned long kHwcap2Bf16 = 1ul << 14;

// The "CPU implementer" of /proc/cpuinfo (the MIDR_EL1 field) as a name, for cpu_info().
std::string implementer_name() {
  FILE* file = std::fopen("/proc/cpuinfo", "r");
  if (file == nullptr) return "";
  char line[256];
  unsigned code = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, file))
    found = std::strncmp(line, "CPU implementer", 15) == 0 &&
            std::sscanf(std::strchr(line, ':') ? std::strchr(line, ':') + 1 : line, "%x",
                        &code) == 1;
  std::fclose(file);
  if (!found) return "";
  switch (code) {
    case 0x41: return "ARM";
    case 0x42: return "Broadcom";
    case 0x43: return "Cavium";
    case 0x46: return "Fujitsu";
    case 0x48: return "HiSilicon";
    case 0x4e: return "NVIDIA";
    case 0x51: return "Qualcomm";
    case 0x61: return "Apple";
    case 0xc0: return "Ampere";
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "implementer 0x%02x", code);
      return hex;
    }
  }
}
#endif

}  // namespace

void detect_arm_features(CpuFeatures& f) {
#if defined(__APPLE__)
  f.vendor = "Apple";
  f.brand = sysctl_string("machdep.cpu.brand_string");
  f.neon = sysctl_flag("hw.optional.AdvSIMD") || sysctl_flag("hw.optional.neon");
  f.dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
  f.i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM");
  f.bf16 = sysctl_flag("hw.optional.arm.FEAT_BF16");
#elif defined(__linux__)
  f.vendor = implementer_name();
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  f.neon = hwcap & kHwcapAsimd;
  f.dotprod = hwcap & kHwcapAsimdDp;
  f.i8mm = hwcap2 & kHwcap2I8mm;
  f.bf16 = hwcap2 & kHwcap2Bf16;
#else
  f.neon = true;  // Advanced SIMD is part of every aarch64 ABI; the extensions stay off.
#endif
}

}  // namespace bertcpu

#endif  // __aarch64__
