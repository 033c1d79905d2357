#include <stdexcept>

#include "cpu/cpu_isa.h"
#include "kernels/kernels.h"

namespace bertcpu {

const KernelTable& kernel_table(Isa isa) {
  check_isa_supported(isa);
  switch (isa) {
    case Isa::generic:
      return generic_kernels();
#if defined(BERTCPU_X86)
    case Isa::avx2:
      return avx2_kernels();
    case Isa::avx512:
      return avx512_kernels();
    case Isa::amx:
      return amx_kernels();
#endif
#if defined(BERTCPU_ARM64)
    case Isa::neon:
    case Isa::dotprod:
    case Isa::i8mm:
      return neon_kernels();
#endif
    default:
      break;
  }
  throw std::invalid_argument(std::string("no kernels for ISA ") + isa_name(isa));
}

}  // namespace bertcpu
