"""Builds bertcpu's two extensions: the C++ engine (bertcpu._core) and the Cython tokenizer
(bertcpu._wordpiece).

Kernel sources named *_avx2.cpp / *_avx512.cpp / *_amx.cpp and the like (x86-64) or *_neon.cpp /
*_dotprod.cpp / *_i8mm.cpp / *_bf16.cpp (aarch64) are compiled with that ISA's flags and nothing
else is: the extension runs on any x86-64 or aarch64 and picks its kernels at run time from CPUID
or the OS (csrc/cpu/). The other architecture's files are left out; elsewhere only the generic
kernels are built.
"""
import glob
import os
import subprocess
import sys
import sysconfig

import numpy
import pybind11
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The target's machine: sysconfig follows _PYTHON_HOST_PLATFORM, so a cross build (e.g.
# scripts/test_aarch64.sh) gets the target's kernels, not the build machine's.
TARGET_MACHINE = sysconfig.get_platform().rsplit("-", 1)[-1].lower()
IS_X86 = TARGET_MACHINE in ("x86_64", "amd64", "i686", "x86")
IS_ARM64 = TARGET_MACHINE in ("aarch64", "arm64")

# Per-ISA flags, applied by file-name suffix. Only these translation units may contain ISA code.
X86_ISA_FLAGS = {
    "_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"],
    "_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mf16c",
                    # GCC 12 flags its own _mm512_undefined_* helpers as uninitialized.
                    "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
    # AVX512F/BW/DQ/VL alone, for the low-precision kernels of AVX-512 CPUs without VNNI.
    "_avx512bw.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mf16c",
                      "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
    # AVX-512 plus one extension each: the low-precision kernels (csrc/kernels/lowp_*), chosen at
    # run time only when CPUID reports the extension.
    "_avx512bf16.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512bf16",
                        "-mfma", "-mf16c", "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
    "_avxvnni.cpp": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"],
    "_avx512vnni.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vnni",
                        "-mfma", "-mf16c", "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
    # AMX tiles, with the AVX-512 (BF16, VNNI) epilogues and row formats every AMX CPU has.
    "_amx.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512bf16",
                 "-mavx512vnni", "-mfma", "-mf16c", "-mamx-tile", "-mamx-bf16", "-mamx-int8",
                 "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
}
# aarch64: Advanced SIMD is in every aarch64 ABI, so the NEON files need no ISA flag; each
# extension's files get exactly that extension (GCC and clang, Apple's included, spell them the same
# way).
ARM64_ISA_FLAGS = {
    "_neon.cpp": [],
    "_dotprod.cpp": ["-march=armv8.2-a+dotprod"],
    "_i8mm.cpp": ["-march=armv8.2-a+dotprod+i8mm"],
    "_bf16.cpp": ["-march=armv8.2-a+bf16"],
}
# For GCC, on the aarch64 kernel files: its scheduling before register allocation hoists every load
# of a micro-kernel's K step to the top and so spills accumulators (GCC 12: the 8 x 12 fp32 and int8
# tiles); out-of-order cores need no such scheduling. clang has no such pass (and warns).
ARM64_GCC_KERNEL_FLAGS = ["-fno-schedule-insns"]
ISA_FLAGS = X86_ISA_FLAGS if IS_X86 else ARM64_ISA_FLAGS if IS_ARM64 else {}
OTHER_ISA_SUFFIXES = [sfx for sfx in list(X86_ISA_FLAGS) + list(ARM64_ISA_FLAGS)
                      if sfx not in ISA_FLAGS]

BASE_FLAGS = ["-O3", "-std=c++17", "-fvisibility=hidden", "-fno-math-errno", "-Wall", "-Wextra",
              "-Wno-unused-parameter"]
if IS_ARM64:
    # aarch64 compilers fuse a * b + c by default (every aarch64 CPU has FMA); the scalar reference
    # kernels promise unfused arithmetic, and the SIMD kernels write their FMAs explicitly.
    BASE_FLAGS.append("-ffp-contract=off")
EXTRA = os.environ.get("BERTCPU_EXTRA_CFLAGS", "").split()  # e.g. sanitizer builds


def core_sources():
    sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    return [s for s in sources if not any(s.endswith(sfx) for sfx in OTHER_ISA_SUFFIXES)]


def is_clang(compiler):
    """Whether the C++ compiler is clang (Apple's "gcc" and "cc" are clang too)."""
    command = getattr(compiler, "compiler_so_cxx", None) or compiler.compiler_so
    try:
        version = subprocess.run([command[0], "--version"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "clang" in version


class BuildExt(build_ext):
    """Adds each ISA file's flags to that file only (setuptools has no per-source flags)."""

    def build_extensions(self):
        original_compile = self.compiler._compile
        gcc_flags = ARM64_GCC_KERNEL_FLAGS if IS_ARM64 and not is_clang(self.compiler) else []

        def compile_with_isa_flags(obj, src, ext, cc_args, extra_postargs, pp_opts):
            extra = list(extra_postargs)
            for suffix, flags in ISA_FLAGS.items():
                if src.endswith(suffix):
                    extra += flags + gcc_flags
            return original_compile(obj, src, ext, cc_args, extra, pp_opts)

        self.compiler._compile = compile_with_isa_flags
        # Compile the many core sources in parallel.
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        super().build_extensions()


core = Extension(
    "bertcpu._core",
    sources=core_sources(),
    # Without it, a change to a header alone would not rebuild the extension.
    depends=sorted(glob.glob("csrc/**/*.h", recursive=True)),
    include_dirs=["csrc", pybind11.get_include()],
    language="c++",
    extra_compile_args=BASE_FLAGS + EXTRA,
    extra_link_args=["-pthread"] + EXTRA,
    define_macros=([("BERTCPU_X86", "1")] if IS_X86 else [("BERTCPU_ARM64", "1")] if IS_ARM64
                   else []),
)

# Batches run on plain threads started per call (bertcpu/_parallel.h), not OpenMP: GNU OpenMP's
# idle threads spin after a region and a process that forks after using it hangs in the child.
wordpiece = Extension(
    "bertcpu._wordpiece",
    sources=["bertcpu/_wordpiece.pyx"],
    depends=["bertcpu/_wordpiece.pyx", "bertcpu/_unicode_tables.h", "bertcpu/_parallel.h"],
    include_dirs=[numpy.get_include()],
    language="c++",
    extra_compile_args=["-O3", "-std=c++17", "-pthread"] + EXTRA,
    extra_link_args=["-pthread"] + EXTRA,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    ext_modules=[core] + cythonize([wordpiece], language_level=3,
                                   compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildExt},
)
