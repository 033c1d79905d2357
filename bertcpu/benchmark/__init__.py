"""Benchmark harness: bertcpu against its fp32 peers, in one process, interleaved, same threads.

Used by bench/bench_model.py (the full table in bench/RESULTS.md) and by `bertcpu bench`.

    from bertcpu import benchmark
    report = benchmark.run_benchmark("path/to/model", systems=["bertcpu", "torch"],
                                     shapes=["1x128", "8x128", "mixed"], threads=2, rounds=10)
    print(benchmark.format_report(report))

One module per concern:
- workloads: shapes ("8x128", "mixed"), the random batches made for them, FLOP counts, rounds.
- peak: this machine's fp32 peak (FMA microbenchmark, else the nominal clock x width figure).
- data: real inputs without a model hub (the all-MiniLM-L6-v2 folder, docstring sentences).
- systems: the runners (bertcpu, torch, onnxruntime, openvino, each in its precisions).
- run: run_benchmark, the interleaved rounds and the comparison with the reference system.
- report: the results (BenchmarkReport) and their Markdown table (format_report).
"""
from .data import MINILM_PACKAGE, MINILM_REQUIREMENT, docstring_sentences, minilm_folder
from .peak import Peak, fp32_peak, measure_fp32_peak, nominal_fp32_peak
from .report import BenchmarkReport, ShapeResult, SystemResult, format_report
from .run import mean_row_cosine, nearest_neighbours, run_benchmark, wait_until_idle
from .systems import (PRECISIONS, SYSTEMS, BertcpuRunner, OnnxRuntimeRunner, OpenVinoRunner,
                      Runner, TorchRunner, export_onnx, installed_systems, make_runner,
                      system_precision)
from .workloads import (DEFAULT_SHAPES, Batch, Shape, encoder_flop_counts, encoder_flops,
                        make_batch, parse_shape, rounds_for)

__all__ = [
    "BenchmarkReport", "Batch", "BertcpuRunner", "DEFAULT_SHAPES", "MINILM_PACKAGE",
    "MINILM_REQUIREMENT", "OnnxRuntimeRunner", "OpenVinoRunner", "PRECISIONS", "Peak", "Runner",
    "SYSTEMS", "Shape", "ShapeResult", "SystemResult", "TorchRunner", "docstring_sentences",
    "encoder_flop_counts", "encoder_flops", "export_onnx", "fp32_peak", "format_report",
    "installed_systems", "make_batch", "make_runner", "mean_row_cosine", "measure_fp32_peak",
    "minilm_folder", "nearest_neighbours", "nominal_fp32_peak", "parse_shape", "rounds_for",
    "run_benchmark", "system_precision", "wait_until_idle",
]
