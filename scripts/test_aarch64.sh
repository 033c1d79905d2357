#!/usr/bin/env bash
# Cross-builds bertcpu for aarch64 Linux and tests it under QEMU user-mode emulation, on every ARM
# kernel path: the kernel tests against numpy, and model parity against transformers' outputs made
# here on x86 (scripts/emulated_parity.py). No ARM machine needed; QEMU's timing means nothing, so
# this proves correctness only (speed evidence: bench/aarch64/).
#
#   bash scripts/test_aarch64.sh            # gcc build, the key tests (what .ci/run runs)
#   bash scripts/test_aarch64.sh --full     # also a clang build, and every kernel test
#
# Needs Debian (apt-get as root, the first time): g++-aarch64-linux-gnu, qemu-user, clang. An
# aarch64 Python 3.11 is unpacked from Debian's arm64 packages and numpy/scipy/safetensors/pytest
# come as aarch64 wheels from PyPI; both are kept in $BERTCPU_AARCH64_CACHE (default
# ~/.cache/bertcpu-aarch64), so reruns download nothing.
#
# The paths, each forced both ways: by QEMU CPU model (what the OS reports) and by BERTCPU_ISA.
#   -cpu cortex-a53    Armv8.0: neon only       -> fp32 neon, int8 neon (widening multiplies)
#   -cpu neoverse-n1   Armv8.2 + dotprod        -> int8 SDOT
#   -cpu max           + i8mm, bf16 (and more)  -> int8 USMMLA, bf16 BFMMLA
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
FULL=0
[[ "${1:-}" == "--full" ]] && FULL=1

CACHE=${BERTCPU_AARCH64_CACHE:-$HOME/.cache/bertcpu-aarch64}
ROOT=$CACHE/root    # the arm64 Debian packages, unpacked
SITE=$CACHE/site    # aarch64 wheels
WORK=$CACHE/work    # the source copies built for aarch64, and the parity references
PY_ARM=(qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/python3.11")
mkdir -p "$CACHE" "$WORK"

# ---- tools and the aarch64 Python -----------------------------------------------------------
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
   ! command -v clang >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++-aarch64-linux-gnu qemu-user clang lld
fi

DEBS=(python3.11 python3.11-minimal libpython3.11-stdlib libpython3.11-minimal libpython3.11-dev
      libpython3.11 libc6 libexpat1 zlib1g libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0
      libncursesw6 libtinfo6 libreadline8 libuuid1 libdb5.3 libgcc-s1 libstdc++6 libcrypt1 libnsl2
      libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1)
if [[ ! -x "$ROOT/usr/bin/python3.11" ]]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -q
  mkdir -p "$CACHE/debs" "$ROOT"
  (cd "$CACHE/debs" && apt-get download "${DEBS[@]/%/:arm64}")
  for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$ROOT"; done
fi
# Debian's pyconfig.h picks the multiarch one by include path; give the cross compiler that path.
mkdir -p "$CACHE/include/aarch64-linux-gnu"
ln -sfn "$ROOT/usr/include/aarch64-linux-gnu/python3.11" "$CACHE/include/aarch64-linux-gnu/python3.11"

if [[ ! -f "$SITE/.complete" ]]; then
  # numpy: the build machine's version, whose headers the tokenizer extension is compiled against.
  NUMPY=$(python -c "import numpy; print(numpy.__version__)")
  PLATFORMS=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64
             --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64)
  python -m pip download -q --dest "$CACHE/wheels" "${PLATFORMS[@]}" --python-version 3.11 \
    --implementation cp --only-binary=:all: "numpy==$NUMPY" scipy safetensors pytest
  python -m pip install -q --upgrade --no-deps --no-index --target "$SITE" "${PLATFORMS[@]}" \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --only-binary=:all: "$CACHE"/wheels/*.whl
  touch "$SITE/.complete"
fi

# ---- cross build ------------------------------------------------------------------------------
# setup.py's build_ext with the aarch64 Python's sysconfig (compiler names, EXT_SUFFIX): a copy of
# just its _sysconfigdata module on PYTHONPATH, and _PYTHON_HOST_PLATFORM for setup.py's choice of
# kernel files. $1: gcc or clang.
cross_build() {
  local compiler=$1 dest=$WORK/src-$1
  mkdir -p "$dest" "$WORK/sysconfig"
  cp "$ROOT/usr/lib/python3.11/_sysconfigdata__aarch64-linux-gnu.py" "$WORK/sysconfig/"
  # The tracked and new files of this tree (not its x86 builds).
  (git ls-files --cached --others --exclude-standard -z | grep -zv '\.so$' |
     tar --null -T - -cf -) | tar -xf - -C "$dest"
  local env=(PYTHONPATH="$WORK/sysconfig" _PYTHON_HOST_PLATFORM=linux-aarch64
             _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__aarch64-linux-gnu
             CPPFLAGS="-I$CACHE/include -I$ROOT/usr/include/python3.11")
  if [[ $compiler == clang ]]; then
    env+=(CC="clang --target=aarch64-linux-gnu" CXX="clang++ --target=aarch64-linux-gnu"
          LDSHARED="clang++ --target=aarch64-linux-gnu -shared -fuse-ld=lld")
  fi
  (cd "$dest" && env "${env[@]}" python setup.py -q build_ext --inplace -j 2 >build.log 2>&1) ||
    { tail -40 "$dest/build.log"; exit 1; }
  # Only aarch64 objects: a stray x86 .so would be a silent fallback to nothing.
  file "$dest"/bertcpu/*.so | grep -q "ARM aarch64" || { file "$dest"/bertcpu/*.so; exit 1; }
  echo "built with $compiler: $(cd "$dest" && ls bertcpu/*.so | tr '\n' ' ')"
}

# $1: QEMU CPU model, rest: the command, run by the aarch64 Python in the build's tree.
run_arm() {
  local cpu=$1 src=$2
  shift 2
  (cd "$src" && QEMU_CPU=$cpu PYTHONPATH="$src:$SITE" "${PY_ARM[@]}" "$@")
}

start=$SECONDS
cross_build gcc
SRC=$WORK/src-gcc

# ---- references from x86 --------------------------------------------------------------------
# This tree's x86 build supplies the x86 engine's own error (the yardstick for bf16 / int8).
PYTHONPATH=$REPO python scripts/emulated_parity.py make "$WORK/parity" >"$WORK/parity.log" 2>&1 ||
  { cat "$WORK/parity.log"; exit 1; }

# ---- what each CPU model reports --------------------------------------------------------------
for expect in "cortex-a53 neon" "neoverse-n1 dotprod" "max i8mm"; do
  set -- $expect
  got=$(run_arm "$1" "$SRC" -c "import bertcpu; print(bertcpu.cpu_info()['isa'])")
  echo "-cpu $1: best path $got"
  [[ $got == "$2" ]] || { echo "expected $2 on -cpu $1"; exit 1; }
done
got=$(BERTCPU_ISA=dotprod run_arm max "$SRC" -c "import bertcpu; print(bertcpu.cpu_info()['isa'])")
[[ $got == dotprod ]] || { echo "BERTCPU_ISA=dotprod gave $got"; exit 1; }
for refused in avx2 i8mm; do  # another architecture's path; a path the CPU lacks
  if BERTCPU_ISA=$refused run_arm neoverse-n1 "$SRC" -c "import bertcpu; bertcpu.cpu_info()" \
       2>/dev/null; then
    echo "BERTCPU_ISA=$refused was accepted on -cpu neoverse-n1"; exit 1
  fi
done

# ---- kernel tests: each test is parametrized over every path the CPU model has -------------
# -cpu max has them all. The smaller models check what they offer and refuse; --full runs every
# kernel test on each, and the big shapes and the scalar reference's own cases too.
KEY=(-k "not generic and not identical_for_every_thread_count and not 3072 and not 2304 and not 768-200")
PATHS=(-k "default_paths or unsupported_paths or bad_inputs or asymmetric_resolution")
for cpu in max neoverse-n1 cortex-a53; do
  if [[ $FULL == 1 ]]; then
    select=()
  elif [[ $cpu == max ]]; then
    select=("${KEY[@]}")
  else
    select=("${PATHS[@]}")
  fi
  echo "== kernel tests, -cpu $cpu ($((SECONDS - start)) s)"
  run_arm "$cpu" "$SRC" -m pytest -q -p no:cacheprovider -x tests/test_kernels.py \
    tests/test_kernels_lowp.py "${select[@]}"
done

# ---- model parity: every path by isa= and by BERTCPU_ISA, and each CPU model's own best -------
for cpu in max neoverse-n1 cortex-a53; do
  echo "== model parity, -cpu $cpu ($((SECONDS - start)) s)"
  run_arm "$cpu" "$SRC" "$REPO/scripts/emulated_parity.py" check "$WORK/parity"
done
for isa in neon dotprod; do
  echo "== model parity, -cpu max, BERTCPU_ISA=$isa ($((SECONDS - start)) s)"
  BERTCPU_ISA=$isa run_arm max "$SRC" "$REPO/scripts/emulated_parity.py" check "$WORK/parity"
done

if [[ $FULL == 1 ]]; then
  cross_build clang
  echo "== kernel tests and model parity, clang build, -cpu max"
  run_arm max "$WORK/src-clang" -m pytest -q -p no:cacheprovider -x tests/test_kernels.py \
    tests/test_kernels_lowp.py
  run_arm max "$WORK/src-clang" "$REPO/scripts/emulated_parity.py" check "$WORK/parity"
fi
echo "aarch64 tests passed in $((SECONDS - start)) s"
