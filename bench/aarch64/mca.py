"""llvm-mca reports of the aarch64 kernels: predicted, not measured (no ARM machine was at hand).

    python bench/aarch64/mca.py > bench/aarch64/REPORT.md

Compiles each aarch64 kernel file with the cross compiler and its setup.py flags, finds the loops
in the assembly, and runs llvm-mca (Debian's LLVM) on them for four cores: neoverse-n1 (Graviton2,
Ampere Altra), neoverse-n2 (Azure Cobalt 100), neoverse-v1 (Graviton3) and apple-m1 (LLVM 19
models every Apple core with its Cyclone model).

Micro-kernels: the K loop of the full tile (the loop holding as many multiply-accumulates as the
full tile does per iteration). Its pipe use = the cycles llvm-mca gives those
multiply-accumulates alone (independent, so only their pipes bound them) / the cycles it gives the
whole loop, per iteration. 100% means the loads, address updates and the branch all fit beside them.

Vector helpers: each loop of the function, with how many of its instructions are Advanced SIMD
(operate on .4s / .16b / .8h vectors) and how many are scalar floating point, and llvm-mca's cycles
per iteration.
"""
import ast
import os
import re
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPUS = ["neoverse-n1", "neoverse-n2", "neoverse-v1", "apple-m1"]
COMPILERS = {"gcc": ["aarch64-linux-gnu-g++"], "clang": ["clang", "--target=aarch64-linux-gnu"]}
BASE = ["-O3", "-std=c++17", "-fno-math-errno", "-ffp-contract=off", "-DBERTCPU_ARM64=1",
        "-I" + os.path.join(ROOT, "csrc"), "-S", "-o", "-"]
MATTR = "+dotprod,+i8mm,+bf16"
# The newest llvm-mca installed: Debian 12's LLVM 14 models neoverse-n1 and -v1 as a Cortex-A57;
# LLVM 19 (apt-get install llvm-19) has their own models.
MCA = next((tool for tool in ("llvm-mca-19", "/usr/lib/llvm-19/bin/llvm-mca", "llvm-mca")
            if shutil.which(tool)), "llvm-mca")

# (file, multiply-accumulate mnemonic, how many one K-loop iteration of the full tile holds)
MICRO_KERNELS = [("kernels_neon.cpp", "fmla", 24), ("lowp_dotprod.cpp", "sdot", 84),
                 ("lowp_i8mm.cpp", "usmmla", 24), ("lowp_bf16.cpp", "bfmmla", 24)]
# (file, function symbol pattern, what it is)
HELPERS = [("kernels_neon.cpp", r"add_layernorm", "LayerNorm(x + residuals)"),
           ("kernels_neon.cpp", r"softmax", "softmax"),
           ("kernels_neon.cpp", r"activation", "activations (GELU erf / tanh, ReLU, tanh)"),
           ("lowp_dotprod.cpp", r"quantize_row_neon", "int8 activation quantization"),
           ("lowp_i8mm.cpp", r"quantize_row_neon", "int8 activation quantization, row pairs"),
           ("lowp_bf16.cpp", r"convert_row", "fp32 -> bf16 activation rounding")]
VECTOR = re.compile(r"\bv\d+\.(4s|2s|16b|8b|8h|4h|2d)\b|\bq\d+\b")
SCALAR_FP = re.compile(r"^\s*f\w+\s+s\d+")


def setup_constant(name):
    """A constant of setup.py, read from its source (importing it builds)."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    return ast.literal_eval(next(node.value for node in tree.body if isinstance(node, ast.Assign)
                                 and getattr(node.targets[0], "id", None) == name))


def isa_flags(compiler, path):
    """setup.py's flags for this aarch64 kernel file and compiler."""
    for suffix, flags in setup_constant("ARM64_ISA_FLAGS").items():
        if path.endswith(suffix):
            gcc = setup_constant("ARM64_GCC_KERNEL_FLAGS") if compiler == "gcc" else []
            return flags + gcc
    return []


def assemble(compiler, name):
    path = os.path.join(ROOT, "csrc", "kernels", name)
    cmd = COMPILERS[compiler] + BASE + isa_flags(compiler, path) + [path]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split("\n")


def instructions(lines):
    return [x.split("//")[0].rstrip() for x in lines
            if x.strip() and not x.strip().startswith((".", "//")) and not re.match(r"^\S+:", x)]


def loops(lines):
    """(first, last) line indexes of each backward branch's loop."""
    labels, out = {}, []
    for i, line in enumerate(lines):
        m = re.match(r"^(\.?L\w+):", line)
        if m:
            labels[m.group(1)] = i
        m = re.match(r"^\s*(b\.?\w*|cbn?z|tbn?z)\s+(?:\w+,\s*)*(\.?L\w+)\s*(//.*)?$", line)
        if m and m.group(2) in labels and labels[m.group(2)] < i:
            out.append((labels[m.group(2)] + 1, i))
    return out


def mca(body, cpu):
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write("\n".join(body) + "\n")
    try:
        out = subprocess.run([MCA, "-mtriple=aarch64", f"-mcpu={cpu}", f"-mattr={MATTR}",
                              "-iterations=400", f.name], check=True, capture_output=True,
                             text=True).stdout
    finally:
        os.unlink(f.name)
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return cycles / 400


def function(lines, pattern):
    """The lines of the first function whose symbol matches pattern (up to its .size)."""
    for i, line in enumerate(lines):
        m = re.match(r"^(_Z\w*" + pattern + r"\w*):", line)
        if m:
            end = next(j for j in range(i, len(lines)) if lines[j].strip().startswith(
                f".size\t{m.group(1)}") or lines[j].strip().startswith(f".size {m.group(1)}"))
            return lines[i:end]
    raise LookupError(pattern)


def micro_kernel_report(compiler):
    print(f"\n### Micro-kernels, {compiler}\n")
    print("| kernel | mnemonic | loop instructions | " +
          " | ".join(f"{c}: cycles/iter, pipe use" for c in CPUS) + " |")
    print("|---|---|---|" + "---|" * len(CPUS))
    for name, mnemonic, count in MICRO_KERNELS:
        lines = assemble(compiler, name)
        key = re.compile(r"^\s*" + mnemonic + r"\s")
        candidates = []
        for first, last in loops(lines):
            body = instructions(lines[first:last + 1])
            hits = sum(bool(key.match(x)) for x in body)
            if hits == count:
                candidates.append(body)
        if not candidates:
            print(f"| {name} | {mnemonic} | no loop with {count} {mnemonic} found | |")
            continue
        body = min(candidates, key=len)
        macs = [x for x in body if key.match(x)]
        cells = []
        for cpu in CPUS:
            loop, alone = mca(body, cpu), mca(macs, cpu)
            cells.append(f"{loop:.2f}, {100 * alone / loop:.0f}%")
        print(f"| {name} | {count} x {mnemonic} | {len(body)} | " + " | ".join(cells) + " |")


def helper_report(compiler):
    print(f"\n### Vector helpers, {compiler}\n")
    print("Every loop of each function (innermost first): instructions, Advanced SIMD ones, scalar "
          "FP ones, llvm-mca cycles per iteration.\n")
    print("| helper | loop | instructions | SIMD | scalar FP | " +
          " | ".join(f"{c} cycles/iter" for c in CPUS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(CPUS))
    for name, pattern, what in HELPERS:
        lines = function(assemble(compiler, name), pattern)
        found = 0
        for first, last in sorted(loops(lines), key=lambda fl: fl[1] - fl[0]):
            raw = lines[first:last + 1]
            if any(re.match(r"^\.?L\w+:", x) for x in raw[:-1]):
                continue  # not innermost
            body = instructions(raw)
            simd = sum(bool(VECTOR.search(x)) for x in body)
            scalar = sum(bool(SCALAR_FP.match(x)) for x in body)
            if simd == 0 and scalar == 0:
                continue  # integer bookkeeping (tails, copies)
            found += 1
            cycles = " | ".join(f"{mca(body, cpu):.2f}" for cpu in CPUS)
            print(f"| {what} | {found} | {len(body)} | {simd} | {scalar} | {cycles} |")


if __name__ == "__main__":
    print("# llvm-mca reports of the aarch64 kernels (predicted, not measured)\n")
    print("Made by `python bench/aarch64/mca.py` with "
          + subprocess.run(["aarch64-linux-gnu-g++", "--version"], capture_output=True,
                           text=True).stdout.split("\n")[0] + ", "
          + subprocess.run(["clang", "--version"], capture_output=True,
                           text=True).stdout.split("\n")[0] + " and "
          + subprocess.run([MCA, "--version"], capture_output=True,
                           text=True).stdout.split("\n")[0].strip() + " (llvm-mca).")
    for compiler in COMPILERS:
        micro_kernel_report(compiler)
    for compiler in COMPILERS:
        helper_report(compiler)
