#!/usr/bin/env bash
# Tests this tree's x86 build on x86 CPUs this machine is not, under QEMU user-mode emulation: the
# engine reads the emulated CPU's CPUID, so each model shows the path the engine picks on such a
# CPU and that nothing it runs there needs an instruction that CPU lacks (an AVX-512 instruction on
# an AVX2-only CPU is SIGILL, which native tests with BERTCPU_ISA cannot see). QEMU's timing means
# nothing: correctness only.
#
#   bash scripts/test_x86_models.sh
#
#   -cpu Nehalem     x86-64-v2, no AVX (numpy's own floor)  -> generic everywhere
#   -cpu Haswell     Intel, AVX2 + FMA + F16C                -> avx2; int8 avx2; bf16 runs as fp32
#   -cpu EPYC-Milan  AMD Zen 3, AVX2 only (no AVX-512)       -> the same, on AMD's CPUID
# QEMU 7.2 emulates none of AVX-512, AVX-VNNI or AMX: those paths are tested natively, on CPUs that
# have them, and AVX-512 CPUs with fewer extensions by hiding features of this one (at the end).
# Needs qemu-user (Debian) and the tree built in place (pip install -e .); the reference outputs
# come from transformers here (scripts/emulated_parity.py make).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
command -v qemu-x86_64 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user
ls bertcpu/_core*.so >/dev/null ||
  { echo "build the tree in place first (pip install -e .)"; exit 1; }

# The interpreter itself, not a launcher script (pyenv's shims are shell scripts).
PY=$(python -c "import sys; print(sys.executable)")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

# $1: QEMU CPU model, rest: the Python command line. QEMU's warnings about host features its
# emulator leaves out are dropped; everything else reaches the log.
run_x86() {
  local cpu=$1
  shift
  (cd "$REPO" && PYTHONPATH="$REPO" qemu-x86_64 -cpu "$cpu" "$PY" "$@") \
    2> >(grep -v "TCG doesn't support requested feature" >&2)
}

PYTHONPATH=$REPO python scripts/emulated_parity.py make "$WORK/parity" >"$WORK/parity.log" 2>&1 ||
  { cat "$WORK/parity.log"; exit 1; }

# ---- the paths each CPU model gets: fp32 isa, int8 table, bf16 table ---------------------------
INFO="import bertcpu; i = bertcpu.cpu_info()
print(i['isa'], i['int8_kernels'], i['bfloat16_kernels'])"
for expect in "Nehalem generic generic generic" "Haswell avx2 avx2 generic" \
              "EPYC-Milan avx2 avx2 generic"; do
  set -- $expect
  got=$(run_x86 "$1" -c "$INFO")
  echo "-cpu $1: $got"
  [[ $got == "$2 $3 $4" ]] || { echo "expected '$2 $3 $4' on -cpu $1"; exit 1; }
done
got=$(BERTCPU_ISA=generic run_x86 EPYC-Milan -c "$INFO")
[[ $got == "generic generic generic" ]] || { echo "BERTCPU_ISA=generic gave $got"; exit 1; }
for refused in "EPYC-Milan avx512" "Nehalem avx2" "EPYC-Milan neon"; do
  set -- $refused
  if BERTCPU_ISA=$2 run_x86 "$1" -c "import bertcpu; bertcpu.cpu_info()" 2>"$WORK/err"; then
    echo "BERTCPU_ISA=$2 was accepted on -cpu $1"; exit 1
  fi
  grep -q "BERTCPU_ISA" "$WORK/err" || { cat "$WORK/err"; exit 1; }
done

# ---- kernel tests: each is parametrized over every path the CPU model runs ---------------------
# The biggest shapes and the thread-count sweep are left to the native run (minutes under QEMU);
# Haswell runs the kernels Milan does, so it has the parity checks only.
SKIP=(-k "not identical_for_every_thread_count and not 3072 and not 2304 and not 768-200")
for cpu in EPYC-Milan Nehalem; do
  echo "== kernel tests, -cpu $cpu ($((SECONDS - start)) s)"
  run_x86 "$cpu" -m pytest -q -p no:cacheprovider -x tests/test_kernels.py \
    tests/test_kernels_lowp.py "${SKIP[@]}"
done

# ---- model parity: every path each CPU model runs, each dtype ---------------------------------
for cpu in EPYC-Milan Haswell Nehalem; do
  echo "== model parity, -cpu $cpu ($((SECONDS - start)) s)"
  run_x86 "$cpu" scripts/emulated_parity.py check "$WORK/parity"
done

# ---- AVX-512 CPUs with fewer extensions: this CPU with features hidden -------------------------
# QEMU has no AVX-512, but where this machine has AVX512_VNNI and AVX512_BF16 the engine can be
# told they are absent (BERTCPU_TEST_HIDE_FEATURES, a test hook): Skylake-SP's choices (int8 on
# the avx512bw table beside the avx512 fp32 kernels, bf16 as fp32) and Cascade / Ice Lake's (VNNI int8
# with fp32 attention), run natively.
FEATURES=$(python -c "import bertcpu; print(' '.join(bertcpu.cpu_info()['features']))")
if [[ " $FEATURES " == *" avx512_vnni "* && " $FEATURES " == *" avx512_bf16 "* ]]; then
  for hidden in avx512_vnni,avx512_bf16 avx512_bf16; do
    echo "== model parity, this CPU without $hidden ($((SECONDS - start)) s)"
    BERTCPU_TEST_HIDE_FEATURES=$hidden PYTHONPATH=$REPO python scripts/emulated_parity.py check \
      "$WORK/parity"
  done
else
  echo "== this CPU lacks AVX512_VNNI or AVX512_BF16: no AVX-512 variants to run by hiding them"
fi
echo "x86 CPU model tests passed in $((SECONDS - start)) s"
