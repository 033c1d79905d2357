"""Runs a benchmark script in a process whose CPUID denies some features, so that every library in
it (ONNX Runtime, OpenVINO, numpy, bertcpu) picks the kernels it would pick on a CPU without them:
on an AVX-512 machine, `avx512` stands in for an AVX2-only CPU (AMD Zen 3, Intel Haswell to Comet
Lake) for bertcpu and its peers alike. It uses Linux's CPUID faulting (cpuid_mask.c), which the
CPU and hypervisor must offer ("cpuid_fault" in /proc/cpuinfo's flags); the instructions then run
on the real core, so the figures are this core's speed on the narrower kernels, a stand-in for, not
a measurement of, the CPU named.

    python bench/hide_cpu_features.py avx512 bench/bench_model.py --models bert-base \\
        --shapes 1x16,1x128,8x128 --systems bertcpu-int8,onnxruntime-int8

Feature groups, comma-separated: avx512 (every AVX-512 extension and AMX), avx512_vnni,
avx512_bf16, amx, avx_vnni. Child processes started with exec see the real CPUID.
"""
import ctypes
import hashlib
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import tempfile

SOURCE = pathlib.Path(__file__).with_name("cpuid_mask.c")

# (leaf, subleaf, register 0-3 = eax-edx, bits) per group: Intel SDM vol. 2 CPUID leaf 7.
EAX, EBX, ECX, EDX = range(4)
AMX = [(7, 0, EDX, (1 << 22) | (1 << 24) | (1 << 25))]  # AMX-BF16, AMX-TILE, AMX-INT8
AVX512_VNNI = [(7, 0, ECX, 1 << 11)]
AVX512_BF16 = [(7, 1, EAX, 1 << 5)]
GROUPS = {
    "avx512": [
        # F, DQ, IFMA, PF, ER, CD, BW, VL
        (7, 0, EBX, sum(1 << b for b in (16, 17, 21, 26, 27, 28, 30, 31))),
        # VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ
        (7, 0, ECX, sum(1 << b for b in (1, 6, 11, 12, 14))),
        # 4VNNIW, 4FMAPS, VP2INTERSECT, FP16
        (7, 0, EDX, sum(1 << b for b in (2, 3, 8, 23))),
    ] + AVX512_BF16 + AMX,
    "avx512_vnni": AVX512_VNNI,
    "avx512_bf16": AVX512_BF16,
    "amx": AMX,
    "avx_vnni": [(7, 1, EAX, 1 << 4)],
}


def build_library():
    """The compiled cpuid_mask.c, cached beside the temporary files by its source's hash."""
    source = SOURCE.read_bytes()
    folder = pathlib.Path(tempfile.gettempdir()) / "bertcpu-cpuid-mask"
    library = folder / f"cpuid_mask-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if not library.exists():
        compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if compiler is None:
            raise SystemExit("hide_cpu_features: no C compiler (cc or gcc) to build cpuid_mask.c")
        folder.mkdir(exist_ok=True)
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", str(SOURCE), "-o", str(partial)],
                       check=True)
        partial.replace(library)
    return ctypes.CDLL(str(library))


def hide(groups):
    """Makes this process's CPUID (and its later threads') deny the named feature groups. Call it
    before any library that reads CPUID is imported; returns the loaded helper."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise SystemExit(f"hide_cpu_features: unknown feature group(s) {unknown}; "
                         f"known: {', '.join(GROUPS)}")
    lib = build_library()
    for group in groups:
        for leaf, subleaf, register, bits in GROUPS[group]:
            lib.cpuid_mask_add(leaf, subleaf, register, ctypes.c_uint(bits))
    status = lib.cpuid_mask_install()
    if status != 0:
        raise SystemExit("hide_cpu_features: this CPU or hypervisor offers no CPUID faulting "
                         "(no 'cpuid_fault' in /proc/cpuinfo's flags)" if status == -2 else
                         "hide_cpu_features: could not install the SIGSEGV handler")
    return lib


def main(argv):
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    groups, script, *script_args = argv
    lib = hide(groups.split(","))
    sys.argv = [script, *script_args]
    sys.path.insert(0, str(pathlib.Path(script).resolve().parent))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        lib.cpuid_mask_trapped.restype = ctypes.c_ulong
        print(f"hide_cpu_features: {groups} hidden from {lib.cpuid_mask_trapped()} CPUID "
              f"instructions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
