"""The run: every system on every shape, interleaved, in one process with the same threads.

Method: every system runs every shape once or twice as warm-up (the first output also gives the
max abs difference against the reference system on the real, unpadded positions); then round
after round each system runs each shape once, the order of the systems rotating from round to
round, and the median over rounds is reported. Before each timed call the harness waits until
the process's own threads are idle: ONNX Runtime and OpenMP workers keep spinning for tens of
milliseconds after a call returns, and would otherwise steal cores from the next system.
"""
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from ..config import BertConfig
from .peak import _cpuinfo_field, fp32_peak, nominal_fp32_peak
from .report import BenchmarkReport, ShapeResult, SystemResult
from .systems import make_runner, system_precision
from .workloads import (_MEDIUM_GFLOP, DEFAULT_SHAPES, Shape, encoder_flops, make_batch,
                        parse_shape, rounds_for)


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
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines = (a * b).sum(axis=1) / np.maximum(norms, 1e-30)
    return float(cosines.mean())


def nearest_neighbours(vectors):
    """For each row of `vectors` (L2-normalized), the index of the most similar other row."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


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
    from .. import runtime

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
            from ..model import BertModel

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
