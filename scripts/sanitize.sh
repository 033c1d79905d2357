#!/usr/bin/env bash
# Builds bertcpu's extensions with AddressSanitizer + UndefinedBehaviorSanitizer and runs the kernel
# tests and a subset of the model and tokenizer tests against that build.
#
#   scripts/sanitize.sh [extra pytest arguments]
#
# The build happens in a copy of the source tree in a temporary folder, so the normal in-place
# build (bertcpu/*.so) is never touched; the copy is deleted at the end.
#
# The Python interpreter itself is not instrumented, so the ASan runtime is loaded first with
# LD_PRELOAD (it must come before every other library to intercept malloc), and libstdc++ right
# after it: ASan wraps __cxa_throw and finds the real one when it starts, which fails ("CHECK
# failed ... real___cxa_throw") if libstdc++ only arrives later with the extension, so the first
# C++ exception (every ValueError the core raises) would abort. Leak detection is
# off: at exit CPython deliberately leaves interned strings, static types and module state
# allocated, and the engine's thread pool is never destroyed (its workers may still be parked),
# so LeakSanitizer would report allocations that are not leaks. Memory errors (overflows,
# use-after-free, double free) and undefined behaviour (overflow, misaligned or null access,
# bad shifts) abort the run with a report.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/bertcpu-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Sources, build files and tests; no build products.
tar -C "$repo" --exclude='*.so' --exclude='__pycache__' --exclude='build' \
    -cf - setup.py pyproject.toml README.md csrc bertcpu tests | tar -C "$work" -xf -

# setup.py runs here directly, so its build requirements (pyproject.toml [build-system]) must be
# importable; `pip install .` only puts them in a throwaway build environment.
if ! python -c 'import pybind11, Cython, setuptools' 2>/dev/null; then
    python -m pip install --quiet "setuptools>=64" wheel "pybind11>=2.12" "Cython>=3.0"
fi

cxx="$(python -c 'import sysconfig; print(sysconfig.get_config_var("CXX").split()[0])')"
libasan="$("$cxx" -print-file-name=libasan.so)"
libstdcxx="$("$cxx" -print-file-name=libstdc++.so)"
if [ ! -e "$libasan" ] || [ ! -e "$libstdcxx" ]; then
    echo "sanitize.sh: $cxx has no libasan.so / libstdc++.so ($libasan, $libstdcxx)" >&2
    exit 1
fi

start=$SECONDS
(
    cd "$work"
    # -O1: the sanitizers' recommended level, good reports and a faster build than -O3.
    # -fno-sanitize-recover: a UBSan finding aborts instead of printing and carrying on.
    BERTCPU_EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g" \
        python setup.py --quiet build_ext --inplace
)
echo "sanitize.sh: build took $((SECONDS - start)) s"

export LD_PRELOAD="$libasan $libstdcxx"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Python objects from malloc, not pymalloc's arenas, so ASan sees every buffer handed to the core.
export PYTHONMALLOC=malloc

cd "$work"
imported="$(python -c 'import bertcpu._core, bertcpu._wordpiece; print(bertcpu._core.__file__)')"
case "$imported" in
    "$work"/*) ;;
    *) echo "sanitize.sh: imported $imported instead of the sanitized build in $work" >&2; exit 1 ;;
esac

start=$SECONDS
python -m pytest -q -p no:cacheprovider \
    tests/test_kernels.py \
    tests/test_kernels_lowp.py \
    tests/test_model.py \
    tests/test_lowp_model.py \
    tests/test_tokenizer.py \
    -k "test_kernels or odd_shapes or each_activation or half_precision or sharded or without_pooler \
        or every_kernel_path or input_forms or inputs_are_not_modified or bad_ or huge_batch \
        or minilm_seq or corpus_uncased or batch_equals or random_nasty or pickle \
        or int8_paths_agree or keeps_qkv or outputs_and_memory" \
    "$@"
echo "sanitize.sh: tests took $((SECONDS - start)) s"
