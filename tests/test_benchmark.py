"""The benchmark harness (bertcpu.benchmark) on a tiny random model: it runs each system, and the
numbers it reports are consistent with its measurements. No timing assertions: only the plumbing
(FLOP counts, rates derived from the recorded times, max abs differences, the report) is checked.
"""
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import pytest

import bertcpu
from bertcpu import BertModel, benchmark
from bertcpu.config import BertConfig

TINY = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  vocab_size=100, max_position_embeddings=64)
SHAPES = ["1x8", "3x4-16"]
THREADS = 2
# A fixed peak, so that % of peak is checkable and no microbenchmark runs.
PEAK = benchmark.Peak(gflops=50.0, threads=THREADS, method="nominal", detail="test value")


def _installed(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel.from_config(TINY, seed=3).save_pretrained(folder)
    return folder


def test_flops_match_the_known_bert_figures():
    # BERT-base: about 22.35 GFLOP per 128-token sequence; all-MiniLM-L6-v2: about 2.87.
    assert round(benchmark.encoder_flops(BertConfig(), [128]) / 1e9, 2) == 22.35
    minilm = BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    assert round(benchmark.encoder_flops(minilm, [128]) / 1e9, 2) == 2.87
    # Dense work grows with the token count, attention with each sequence's square.
    h, i, layers = TINY.hidden_size, TINY.intermediate_size, TINY.num_hidden_layers
    per_token = 2 * (4 * h * h + 2 * h * i)
    expected = layers * (per_token * (3 + 5) + 4 * h * (3 * 3 + 5 * 5))
    assert benchmark.encoder_flops(TINY, [3, 5]) == expected


def test_parse_shape():
    assert benchmark.parse_shape("8x128") == benchmark.Shape(8, 128)
    assert benchmark.parse_shape("mixed") == benchmark.Shape(32, 128, 8)
    assert benchmark.parse_shape("4x2-9") == benchmark.Shape(4, 9, 2)
    assert benchmark.parse_shape("4x2-9").label == "4x2-9"
    for bad in ["8*128", "0x16", "8x0", "2x9-3", ""]:
        with pytest.raises(ValueError, match="shape"):
            benchmark.parse_shape(bad)


def test_mixed_batch_is_padded_to_its_longest_sequence():
    batch = benchmark.make_batch(benchmark.parse_shape("32x8-128"), vocab_size=30522, seed=0)
    lengths = batch.lengths
    assert lengths.min() >= 8 and lengths.max() <= 128 and len(set(lengths.tolist())) > 10
    assert batch.input_ids.shape == (32, lengths.max())
    np.testing.assert_array_equal(batch.attention_mask.sum(axis=1), lengths)
    assert (batch.input_ids[batch.attention_mask == 0] == 0).all()
    assert (batch.input_ids[batch.attention_mask == 1] > 0).all()
    again = benchmark.make_batch(benchmark.parse_shape("32x8-128"), vocab_size=30522, seed=0)
    np.testing.assert_array_equal(again.input_ids, batch.input_ids)


def _check_consistent(report, systems, rounds):
    """Every derived figure follows from the recorded times and the FLOP formula."""
    assert list(report.systems) == systems
    assert [s.shape for s in report.shapes] == SHAPES
    for shape in report.shapes:
        assert shape.rounds == rounds
        assert shape.real_tokens == sum(shape.lengths)
        assert shape.gflop == pytest.approx(benchmark.encoder_flops(TINY, shape.lengths) / 1e9)
        assert [r.system for r in shape.systems] == systems
        medians = {r.system: r.median_ms for r in shape.systems}
        for r in shape.systems:
            assert len(r.times_ms) == rounds and all(t > 0 for t in r.times_ms)
            assert r.median_ms == pytest.approx(statistics.median(r.times_ms))
            assert r.best_ms == min(r.times_ms)
            assert r.sequences_per_s == pytest.approx(shape.batch / r.median_ms * 1e3)
            assert r.tokens_per_s == pytest.approx(shape.real_tokens / r.median_ms * 1e3)
            assert r.gflops == pytest.approx(shape.gflop / r.median_ms * 1e3)
            assert r.percent_of_peak == pytest.approx(100 * r.gflops / PEAK.gflops)
            # Against bertcpu in the same precision.
            precision = benchmark.system_precision(r.system)
            counterpart = "bertcpu" if precision == "fp32" else f"bertcpu-{precision}"
            assert r.speedup_of_bertcpu == pytest.approx(r.median_ms / medians[counterpart])


def test_bertcpu_alone(tiny_dir):
    report = benchmark.run_benchmark(tiny_dir, systems=["bertcpu"], shapes=SHAPES,
                                     threads=THREADS, rounds=3, peak=PEAK, log=None)
    _check_consistent(report, ["bertcpu"], 3)
    assert report.reference is None
    assert all(r.max_abs_diff is None for s in report.shapes for r in s.systems)
    table = benchmark.format_report(report)
    assert "| 3x4-16 | 3 | bertcpu |" in table
    json.dumps(report.to_dict())


class _Perturbed(benchmark.BertcpuRunner):
    """bertcpu with a known error at one real position and garbage at every padded position."""

    error = 0.25

    def __init__(self):
        super().__init__()
        self.name = "perturbed"

    def run(self, input_ids, attention_mask, token_type_ids):
        out = super().run(input_ids, attention_mask, token_type_ids).copy()
        out[0, 0, 1] += self.error
        out[attention_mask == 0] = 1000.0
        return out


def test_max_abs_diff_counts_real_positions_only(tiny_dir):
    report = benchmark.run_benchmark(tiny_dir, systems=["bertcpu", _Perturbed()], shapes=SHAPES,
                                     threads=THREADS, rounds=1, reference="bertcpu", peak=PEAK,
                                     log=None)
    for shape in report.shapes:
        exact, perturbed = shape.systems
        assert exact.max_abs_diff == 0.0
        assert perturbed.max_abs_diff == pytest.approx(_Perturbed.error, abs=1e-6)
    assert "(reference)" in benchmark.format_report(report)


@pytest.mark.skipif(not _installed("torch", "transformers"), reason="needs torch + transformers")
def test_against_torch_from_a_config():
    # A config, not a folder: the harness saves the random model once for both systems.
    report = benchmark.run_benchmark(TINY, systems=["bertcpu", "torch"], shapes=SHAPES,
                                     threads=THREADS, rounds=2, peak=PEAK, log=None)
    _check_consistent(report, ["bertcpu", "torch"], 2)
    assert report.reference == "torch"
    for shape in report.shapes:
        ours, torch_result = shape.systems
        assert torch_result.max_abs_diff == 0.0
        assert 0.0 < ours.max_abs_diff <= 1e-4
    assert "max abs diff vs torch" in benchmark.format_report(report)


@pytest.mark.skipif(not _installed("torch", "transformers", "onnx", "onnxruntime", "openvino"),
                    reason="needs the peers of bench/requirements.txt")
def test_onnxruntime_and_openvino(tiny_dir):
    systems = ["bertcpu", "torch", "onnxruntime", "openvino"]
    report = benchmark.run_benchmark(tiny_dir, systems=systems, shapes=SHAPES, threads=THREADS,
                                     rounds=2, peak=PEAK, log=None)
    _check_consistent(report, systems, 2)
    assert "Attention 2" in report.systems["onnxruntime"]  # the optimizer fused both layers
    assert "precision f32" in report.systems["openvino"]
    for shape in report.shapes:
        for r in shape.systems:
            assert r.max_abs_diff <= 1e-4, (shape.shape, r.system)


def test_low_precision_systems_against_their_counterparts(tiny_dir):
    """bertcpu-bf16 / -int8 report their cosine against the reference, and a low-precision peer's
    speedup is counted against bertcpu in the same precision."""
    import bertcpu

    systems = ["bertcpu", "bertcpu-int8"]
    peers = {"onnxruntime-int8": ("torch", "transformers", "onnx", "onnxruntime")}
    if bertcpu.cpu_info()["bfloat16_isa"] != "generic":
        systems.append("bertcpu-bf16")
        if "avx512_bf16" in bertcpu.cpu_info()["features"]:
            peers["openvino-bf16"] = ("torch", "transformers", "onnx", "openvino")
    systems += [name for name, modules in peers.items() if _installed(*modules)]
    report = benchmark.run_benchmark(tiny_dir, systems=systems, shapes=SHAPES, threads=THREADS,
                                     rounds=2, reference="bertcpu", peak=PEAK, log=None)
    _check_consistent(report, systems, 2)
    table = benchmark.format_report(report)
    assert "mean row cosine" in table and "bertcpu speedup (same precision)" in table
    for shape in report.shapes:
        for r in shape.systems:
            precision = benchmark.system_precision(r.system)
            assert r.mean_cosine > (0.9999 if precision != "int8" else 0.999), (shape.shape, r.system)
    if "openvino-bf16" in systems:
        assert "precision bf16" in report.systems["openvino-bf16"]
    if "onnxruntime-int8" in systems:
        assert "dynamic int8 quantization" in report.systems["onnxruntime-int8"]
    assert "int8, kernels" in report.systems["bertcpu-int8"]


def test_system_names():
    assert [benchmark.system_precision(n) for n in ("bertcpu", "torch-bf16", "onnxruntime-int8")] \
        == ["fp32", "bf16", "int8"]
    with pytest.raises(ValueError, match="unknown system 'openvino-int4'"):
        benchmark.make_runner("openvino-int4", "/tmp")


def test_mean_row_cosine_counts_real_positions_only():
    reference = np.ones((2, 3, 4), np.float32)
    output = reference.copy()
    output[0, 0] = [1, -1, 1, -1]  # orthogonal to the reference row: cosine 0
    output[1, 2] = 7.0  # padded: ignored
    mask = np.array([[1, 1, 0], [1, 1, 0]])
    assert benchmark.mean_row_cosine(output, reference, mask) == pytest.approx(3 / 4)


def test_bad_requests(tiny_dir):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        benchmark.run_benchmark(tiny_dir, shapes=["1x65"], threads=THREADS, peak=PEAK, log=None)
    with pytest.raises(ValueError, match="unknown system 'tensorflow'"):
        benchmark.run_benchmark(tiny_dir, systems=["tensorflow"], shapes=SHAPES, threads=THREADS,
                                peak=PEAK, log=None)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        benchmark.run_benchmark(tiny_dir / "nowhere", shapes=SHAPES, threads=THREADS, peak=PEAK,
                                log=None)


def test_fp32_peak():
    peak = benchmark.fp32_peak(1)
    if peak is None:
        pytest.skip("neither a C compiler with AVX2/AVX-512 nor a clock in /proc/cpuinfo")
    assert peak.threads == 1 and peak.gflops > 0 and peak.method in ("measured", "nominal")


COMPARE_BUILDS = pathlib.Path(__file__).resolve().parents[1] / "bench" / "compare_builds.py"
# The folder holding the bertcpu under test (the repository, built in place by `pip install -e`).
THIS_BUILD = pathlib.Path(bertcpu.__file__).resolve().parents[1]


def _compare_builds(build_a, build_b, *extra):
    return subprocess.run([sys.executable, str(COMPARE_BUILDS), str(build_a), str(build_b),
                           "--model", "minilm", "--shapes", "1x8,2x4", "--calls", "1", *extra],
                          capture_output=True, text=True, timeout=300)


def test_compare_builds_reports_every_shape():
    result = _compare_builds(THIS_BUILD, THIS_BUILD, "--rounds", "2", "--pause-ms", "1")
    assert result.returncode == 0, result.stderr
    assert "2 rounds x 1 calls, 1 ms idle before each" in result.stdout
    lines = result.stdout.splitlines()
    assert sum(line.startswith("round ") for line in lines) == 4  # 2 rounds x 2 builds
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["1x8"], ["2x4"])}
    assert set(rows) == {"1x8", "2x4"}
    for shape, (_, a_ms, b_ms, ratio, *per_round) in rows.items():
        assert float(a_ms) > 0 and float(b_ms) > 0 and len(per_round) == 2
        assert float(ratio) == pytest.approx(statistics.median(float(r) for r in per_round), abs=1e-3)


def test_compare_builds_refuses_a_folder_without_a_build(tmp_path):
    result = _compare_builds(THIS_BUILD, tmp_path, "--rounds", "1")
    assert result.returncode != 0
    assert "build B" in result.stderr or "No module named 'bertcpu'" in result.stderr


def test_docstring_sentences_do_not_depend_on_what_was_imported_before():
    # In a fresh interpreter: the listed modules' submodules that nothing imported yet (and that
    # add sentences of their own once imported) must not change the list.
    script = (
        "from bertcpu import benchmark\n"
        "before = benchmark.docstring_sentences(300)\n"
        "import email.mime.multipart, unittest.mock, xml.dom.pulldom, logging.handlers\n"
        "import concurrent.futures.process, json.tool, http.cookies\n"
        "after = benchmark.docstring_sentences(300)\n"
        "print(len(before), sum(a == b for a, b in zip(before, after)))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=THIS_BUILD, check=True)
    assert result.stdout.split() == ["300", "300"]


REPO = pathlib.Path(__file__).resolve().parents[1]
HIDE_CPU_FEATURES = REPO / "bench" / "hide_cpu_features.py"


def _cpu_flags():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags")
            for flag in line.split(":", 1)[1].split()}


def _hide_cpu_features(groups, script, tmp_path):
    path = tmp_path / "script.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(HIDE_CPU_FEATURES), groups, str(path)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))  # this checkout's bertcpu


@pytest.mark.skipif(not {"cpuid_fault", "avx512f", "avx512_vnni"} <= _cpu_flags(),
                    reason="needs CPUID faulting and an AVX-512 VNNI CPU whose features to hide")
def test_hide_cpu_features_hides_them_from_every_library(tmp_path):
    # bertcpu reads CPUID itself; numpy's dispatcher is another library reading it.
    script = ("import json, threading, bertcpu, numpy\n"
              "try:\n"
              "    from numpy._core._multiarray_umath import __cpu_features__ as numpy_features\n"
              "except ImportError:  # numpy 1.x\n"
              "    from numpy.core._multiarray_umath import __cpu_features__ as numpy_features\n"
              "seen = []\n"
              "thread = threading.Thread(target=lambda: seen.append(bertcpu.cpu_info()))\n"
              "thread.start(); thread.join()\n"
              "print(json.dumps([seen[0]['features'], seen[0]['int8_kernels'],\n"
              "                  numpy_features['AVX512F'], numpy_features['AVX2']]))\n")
    result = _hide_cpu_features("avx512", script, tmp_path)
    assert result.returncode == 0, result.stderr
    features, int8_kernels, numpy_avx512f, numpy_avx2 = json.loads(result.stdout)
    real = bertcpu.cpu_info()["features"]
    assert features == [f for f in real if not f.startswith(("avx512", "amx"))]
    assert int8_kernels == ("avxvnni" if "avx_vnni" in real else "avx2")
    assert not numpy_avx512f and numpy_avx2
    assert "avx512 hidden from" in result.stderr

    result = _hide_cpu_features("avx512_vnni", script, tmp_path)
    features = json.loads(result.stdout)[0]
    assert "avx512_vnni" not in features and "avx512f" in features


@pytest.mark.skipif("cpuid_fault" not in _cpu_flags(), reason="needs CPUID faulting")
def test_hide_cpu_features_leaves_real_faults_fatal(tmp_path):
    # A segmentation fault that is not a CPUID instruction goes to the handler before (here the
    # default: the process dies of SIGSEGV), instead of looping in the CPUID handler.
    result = _hide_cpu_features("avx512", "import ctypes\nctypes.string_at(0)\n", tmp_path)
    assert result.returncode == -11


def test_hide_cpu_features_refuses_unknown_groups(tmp_path):
    result = _hide_cpu_features("avx513", "print('ran')\n", tmp_path)
    assert result.returncode != 0 and "ran" not in result.stdout
    assert "unknown feature group(s) ['avx513']" in result.stderr
