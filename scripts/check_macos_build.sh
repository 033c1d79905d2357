#!/usr/bin/env bash
# Cross-builds both extensions for macOS on Apple silicon (arm64), with zig's clang and the macOS
# SDK headers zig bundles: no Mac needed. It proves what a compile and a link can prove -- the
# __APPLE__ code (sysctlbyname feature detection), the per-file ISA flags of setup.py with clang,
# no OpenMP, Mach-O linking with Python's symbols left to the loader -- not that the result runs
# (nothing here can run a Mach-O binary).
#
#   bash scripts/check_macos_build.sh
#
# The build is setup.py's own, pointed at macOS by _PYTHON_HOST_PLATFORM (what cross-building
# tools set) with CC / CXX / LDSHARED wrapping `python -m ziglang`. Python's headers are this
# machine's (no macOS CPython headers exist outside a Mac); numpy's come from its macOS arm64
# wheel, since the installed ones are configured for Linux. Downloads are kept in
# $BERTCPU_MACOS_CACHE (default ~/.cache/bertcpu-macos).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${BERTCPU_MACOS_CACHE:-$HOME/.cache/bertcpu-macos}
WORK=$CACHE/work
mkdir -p "$CACHE/bin" "$WORK"

python -c "import ziglang" 2>/dev/null || pip install -q ziglang
NUMPY_VERSION=$(python -c "import numpy; print(numpy.__version__)")
NUMPY_INCLUDE=$CACHE/numpy-$NUMPY_VERSION/numpy/_core/include
if [[ ! -d $NUMPY_INCLUDE ]]; then
  pip download -q --no-deps --only-binary=:all: --platform macosx_14_0_arm64 \
    "numpy==$NUMPY_VERSION" -d "$CACHE/wheels"
  python -m zipfile -e "$CACHE"/wheels/numpy-"$NUMPY_VERSION"-*macosx*arm64.whl \
    "$CACHE/numpy-$NUMPY_VERSION"
fi

# zig's clang driver reads -march as a CPU name: Arm's -march=armv8.2-a+ext (setup.py's flags for
# the dotprod / i8mm / bf16 files) is spelled -mcpu=generic+v8_2a+ext there.
cat > "$CACHE/bin/zig-c++" <<EOF
#!/usr/bin/env bash
args=()
for a in "\$@"; do
  [[ \$a == -march=armv8.2-a* ]] && a="-mcpu=generic+v8_2a\${a#-march=armv8.2-a}"
  args+=("\$a")
done
exec python -m ziglang c++ -target aarch64-macos -I"$NUMPY_INCLUDE" "\${args[@]}"
EOF
chmod +x "$CACHE/bin/zig-c++"

# A clean copy of the sources (no x86 build products).
rm -rf "$WORK/src"
mkdir -p "$WORK/src"
git ls-files -co --exclude-standard | grep -v '\.so$' | tar -cf - -T - | tar -xf - -C "$WORK/src"
cd "$WORK/src"
ZCXX=$CACHE/bin/zig-c++
_PYTHON_HOST_PLATFORM=macosx-11.0-arm64 CC=$ZCXX CXX=$ZCXX \
  LDSHARED="$ZCXX -shared -undefined dynamic_lookup" \
  LDCXXSHARED="$ZCXX -shared -undefined dynamic_lookup" \
  python setup.py -q build_ext --inplace -j "$(nproc)" >"$WORK/build.log" 2>&1 ||
  { tail -30 "$WORK/build.log"; echo "macOS arm64 build FAILED (log: $WORK/build.log)"; exit 1; }

# Both extensions are arm64 Mach-O libraries, and what they need from the system is macOS's:
# sysctlbyname for the CPU features, not Linux's getauxval.
python - bertcpu/_core*.so bertcpu/_wordpiece*.so <<'EOF'
import struct, subprocess, sys

MH_MAGIC_64, CPU_TYPE_ARM64 = 0xFEEDFACF, 0x0100000C
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        magic, cputype = struct.unpack("<II", f.read(8))
    assert (magic, cputype) == (MH_MAGIC_64, CPU_TYPE_ARM64), f"{path}: not an arm64 Mach-O file"
nm = next(tool for tool in ("llvm-nm-19", "llvm-nm", "nm")
          if subprocess.run(["which", tool], capture_output=True).returncode == 0)
core = subprocess.run([nm, "-u", sys.argv[1]], capture_output=True, text=True, check=True).stdout
assert "_sysctlbyname" in core, "the core does not read the CPU's features with sysctlbyname"
assert "getauxval" not in core, "the core calls Linux's getauxval on macOS"
print(f"macOS arm64 build OK: {', '.join(p.rsplit('/', 1)[-1].split('.')[0] for p in sys.argv[1:])}"
      " are arm64 Mach-O libraries using sysctlbyname")
EOF
