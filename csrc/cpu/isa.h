// The kernel paths, in a header with no dependencies: ISA-specific translation units include it
// and must not pull in inline library code (the linker could keep their AVX copy for everyone).
#pragma once

namespace bertcpu {

// Ordered: a higher value needs every feature of the lower ones.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

}  // namespace bertcpu
