"""This machine's fp32 peak, to report each system's GFLOP/s against: measured by an FMA
microbenchmark where a C compiler and AVX2/AVX-512 are at hand, else the nominal figure from
/proc/cpuinfo."""
import dataclasses
import os
import shutil
import subprocess
import tempfile


@dataclasses.dataclass
class Peak:
    """fp32 FLOP/s this machine can reach with `threads` threads, and how that was found."""

    gflops: float
    threads: int
    method: str  # "measured" (FMA microbenchmark) or "nominal" (clock x FLOP per cycle)
    detail: str


# Ten independent FMA chains per thread (more than latency x ports on any x86 core), registers
# only: the result is the FMA throughput of the core at the clock it actually runs. The chains
# start from different values: equal ones would be one computation to the compiler, which then
# runs a single latency-bound chain (and the figure comes out 2.5x too high).
_FMA_SOURCE = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef WIDE
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define LANES 16
static float first(vec v) { return _mm512_cvtss_f32(v); }
#else
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define LANES 8
static float first(vec v) { return _mm256_cvtss_f32(v); }
#endif
static long iterations;
static void *spin(void *out) {
    vec b = SET1(0.9999999f), c = SET1(1e-7f);
    vec a0 = SET1(1.000f), a1 = SET1(1.001f), a2 = SET1(1.002f), a3 = SET1(1.003f);
    vec a4 = SET1(1.004f), a5 = SET1(1.005f), a6 = SET1(1.006f), a7 = SET1(1.007f);
    vec a8 = SET1(1.008f), a9 = SET1(1.009f);
    for (long i = 0; i < iterations; i++) {
        a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c);
        a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c);
        a8 = FMA(a8, b, c); a9 = FMA(a9, b, c);
    }
    vec s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(ADD(a4, a5), ADD(a6, a7)), ADD(a8, a9)));
    *(float *)out = first(s);
    return NULL;
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
int main(int argc, char **argv) {
    int threads = atoi(argv[1]), trials = atoi(argv[3]);
    iterations = atol(argv[2]);
    pthread_t tid[256];
    float out[256];
    double best = 0, check = 0;
    if (threads < 1 || threads > 256) return 2;
    for (int t = 0; t < trials; t++) {
        double start = now();
        for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, spin, &out[i]);
        for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
        double seconds = now() - start;
        double gflops = (double)threads * iterations * 10 * LANES * 2 / seconds / 1e9;
        if (gflops > best) best = gflops;
        for (int i = 0; i < threads; i++) check += out[i];
    }
    printf("%.3f %g\n", best, check);
    return 0;
}
"""


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpuinfo_field(name):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def _cpuinfo_mhz():
    """The highest "cpu MHz" in /proc/cpuinfo, or None."""
    values = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "cpu MHz":
                    values.append(float(value))
    except (OSError, ValueError):
        return None
    return max(values) if values else None


def _fma_width():
    """("avx512" | "avx2", fp32 FLOP per cycle per core assuming two FMA units), or None."""
    flags = _cpu_flags()
    if "avx512f" in flags:
        return "avx512", 64
    if "avx2" in flags and "fma" in flags:
        return "avx2", 32
    return None


def nominal_fp32_peak(threads):
    """Peak from the clock /proc/cpuinfo reports ("cpu MHz") x fp32 FLOP per cycle per core
    (two FMA units of the widest vector: 32 with AVX2, 64 with AVX-512) x threads, or None where
    either is unknown. The reported clock is often the base clock: cores that boost run faster."""
    mhz = _cpuinfo_mhz()
    width = _fma_width()
    if mhz is None or width is None:
        return None
    isa, flop_per_cycle = width
    gflops = mhz * 1e-3 * flop_per_cycle * threads
    return Peak(gflops, threads, "nominal",
                f"{mhz:.0f} MHz (/proc/cpuinfo 'cpu MHz') x {flop_per_cycle} FLOP/cycle/core "
                f"(2 x {isa} FMA) x {threads} threads")


def measure_fp32_peak(threads, trials=5):
    """fp32 FMA throughput of `threads` threads, measured by a register-only microbenchmark built
    with the system's C compiler (best of `trials` runs of ~0.15 s), or None where there is no
    compiler or no AVX2/AVX-512."""
    width = _fma_width()
    compiler = (shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
                or shutil.which("clang"))
    if width is None or compiler is None:
        return None
    isa = width[0]
    flags = ["-mavx512f", "-DWIDE"] if isa == "avx512" else ["-mavx2", "-mfma"]
    # About 0.15 s per trial at 4 GHz: an iteration is 10 FMAs, 5 cycles on two FMA units.
    iterations = int(0.15 * 4e9 * 2 / 10)
    with tempfile.TemporaryDirectory(prefix="bertcpu-peak-") as tmp:
        source = os.path.join(tmp, "fma.c")
        binary = os.path.join(tmp, "fma")
        with open(source, "w") as f:
            f.write(_FMA_SOURCE)
        build = subprocess.run([compiler, "-O2", *flags, "-pthread", source, "-o", binary],
                               capture_output=True, text=True)
        if build.returncode != 0:
            return None
        run = subprocess.run([binary, str(threads), str(iterations), str(trials)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            return None
    gflops = float(run.stdout.split()[0])
    return Peak(gflops, threads, "measured",
                f"{isa} FMA microbenchmark, {threads} threads: {gflops:.1f} GFLOP/s "
                f"({gflops / threads:.1f} per core)")


def fp32_peak(threads):
    """The measured peak where it can be measured, otherwise the nominal one (or None).

    The nominal figure is no check on the measurement: it assumes full-width FMA units, and some
    cores (AMD Zen 4) run a 512-bit FMA as two 256-bit halves, at half that rate."""
    return measure_fp32_peak(threads) or nominal_fp32_peak(threads)
