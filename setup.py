"""Builds bertcpu's two extensions: the C++ engine (bertcpu._core) and the Cython tokenizer
(bertcpu._wordpiece).

Kernel sources named *_avx2.cpp / *_avx512.cpp are compiled with that ISA's flags and nothing else
is: the extension runs on any x86-64 and picks its kernels at run time from CPUID (csrc/cpu/). On
other architectures those files are left out and only the generic kernels are built.
"""
import glob
import os
import platform
import sys

import numpy
import pybind11
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

# Per-ISA flags, applied by file-name suffix. Only these translation units may contain ISA code.
ISA_FLAGS = {
    "_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"],
    "_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mf16c",
                    # GCC 12 flags its own _mm512_undefined_* helpers as uninitialized.
                    "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
    # AVX-512 plus one extension each: the low-precision kernels (csrc/kernels/lowp_*), chosen at
    # run time only when CPUID reports the extension.
    "_avx512bf16.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512bf16",
                        "-mfma", "-mf16c", "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
    "_avxvnni.cpp": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"],
    "_avx512vnni.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vnni",
                        "-mfma", "-mf16c", "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
}

BASE_FLAGS = ["-O3", "-std=c++17", "-fvisibility=hidden", "-fno-math-errno", "-Wall", "-Wextra",
              "-Wno-unused-parameter"]
EXTRA = os.environ.get("BERTCPU_EXTRA_CFLAGS", "").split()  # e.g. sanitizer builds


def core_sources():
    sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    if not IS_X86:
        sources = [s for s in sources if not any(s.endswith(sfx) for sfx in ISA_FLAGS)]
    return sources


class BuildExt(build_ext):
    """Adds each ISA file's flags to that file only (setuptools has no per-source flags)."""

    def build_extensions(self):
        original_compile = self.compiler._compile

        def compile_with_isa_flags(obj, src, ext, cc_args, extra_postargs, pp_opts):
            extra = list(extra_postargs)
            for suffix, flags in ISA_FLAGS.items():
                if src.endswith(suffix):
                    extra += flags
            return original_compile(obj, src, ext, cc_args, extra, pp_opts)

        self.compiler._compile = compile_with_isa_flags
        # Compile the many core sources in parallel.
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        super().build_extensions()


core = Extension(
    "bertcpu._core",
    sources=core_sources(),
    include_dirs=["csrc", pybind11.get_include()],
    language="c++",
    extra_compile_args=BASE_FLAGS + EXTRA,
    extra_link_args=["-pthread"] + EXTRA,
    define_macros=[("BERTCPU_X86", "1")] if IS_X86 else [],
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
