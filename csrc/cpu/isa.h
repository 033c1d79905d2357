// The kernel paths, in a header with no dependencies: ISA-specific translation units include it
// and must not pull in inline library code (the linker could keep their AVX copy for everyone).
#pragma once

namespace bertcpu {

// Ordered within each architecture: a higher value needs every feature of the lower ones of its
// family (x86: avx2 < avx512; aarch64: neon < dotprod < i8mm). A CPU runs generic and one family.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2, neon = 3, dotprod = 4, i8mm = 5 };

// Every path, in the order above.
constexpr Isa kAllIsas[] = {Isa::generic, Isa::avx2, Isa::avx512,
                            Isa::neon,    Isa::dotprod, Isa::i8mm};

}  // namespace bertcpu
