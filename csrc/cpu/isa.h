// The kernel paths, in a header with no dependencies: ISA-specific translation units include it
// and must not pull in inline library code (the linker could keep their AVX copy for everyone).
#pragma once

namespace bertcpu {

// Ordered within each architecture: a higher value needs every feature of the lower ones of its
// family (x86: avx2 < avx512 < amx; aarch64: neon < dotprod < i8mm). A CPU runs generic and one
// family. amx is avx512 plus AMX tiles (AMX-TILE, AMX-BF16, AMX-INT8) for the low-precision
// products; its fp32 kernels are avx512's.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2, amx = 3, neon = 4, dotprod = 5, i8mm = 6 };

// Every path, in the order above.
constexpr Isa kAllIsas[] = {Isa::generic, Isa::avx2,    Isa::avx512, Isa::amx,
                            Isa::neon,    Isa::dotprod, Isa::i8mm};

}  // namespace bertcpu
