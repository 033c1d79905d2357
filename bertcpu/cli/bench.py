"""`bertcpu bench`: latency and throughput of the encoder, optionally beside its peers."""
import json
import os
import sys

from ..benchmark import SYSTEMS
from ..model import DTYPES
from ._common import UserError, positive_int

PEERS = tuple(name for name in SYSTEMS if not name.startswith("bertcpu"))


def add_command(commands):
    bench = commands.add_parser(
        "bench", help="measure latency and throughput",
        description="Time the encoder on random token ids. Without --model, a random-weight "
                    "BERT-base built in memory (no download).")
    bench.add_argument("--model", "-m", help="model folder or HuggingFace model id")
    bench.add_argument("--batch", type=positive_int, default=8, metavar="B")
    bench.add_argument("--seq", type=positive_int, default=128, metavar="S")
    bench.add_argument("--threads", type=positive_int, metavar="T")
    bench.add_argument("--rounds", type=positive_int, default=10, metavar="R",
                       help="timed runs after the warm-up (default 10); the median is reported")
    bench.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="what bertcpu's dense layers compute in (default float32)")
    bench.add_argument("--compare", metavar="PEERS",
                       help="also run these peers, comma-separated: " + ",".join(PEERS))
    bench.add_argument("--json", metavar="FILE", help="also write the full report as JSON to FILE")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    bench.set_defaults(handler=run)


def run(args):
    from .. import benchmark, runtime
    from ..config import BertConfig

    peers = _parse_peers(args.compare)
    if args.json is not None:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise UserError(f"--json {args.json}: folder {folder} does not exist")
    installed = benchmark.installed_systems()
    for peer in [p for p in peers if p not in installed]:
        sys.stderr.write(f"bertcpu: {peer} is not installed: left out of the comparison\n")
    ours = {"float32": "bertcpu", "bfloat16": "bertcpu-bf16", "int8": "bertcpu-int8"}[args.dtype]
    systems = [ours] + [p for p in peers if p in installed]

    if args.model is None:
        model, model_name = BertConfig(), "random-weight BERT-base"
    else:
        from ..hub import resolve_model_path
        from ..sentence import find_transformer_folder

        model = find_transformer_folder(resolve_model_path(args.model))
        model_name = args.model
    threads = args.threads if args.threads is not None else runtime.get_num_threads()
    log = None if args.quiet else _log
    report = benchmark.run_benchmark(model, systems=systems, shapes=[f"{args.batch}x{args.seq}"],
                                     threads=threads, rounds=args.rounds, reduce_big_rounds=False,
                                     model_name=model_name, log=log)
    _print_bench(report)
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=2)
            f.write("\n")


def _log(message):
    sys.stderr.write(f"bertcpu bench: {message}\n")
    sys.stderr.flush()


def _print_bench(report):
    config = report.config
    shape = report.shapes[0]
    print(f"model: {report.model} ({config['num_hidden_layers']} layers, hidden "
          f"{config['hidden_size']}), batch {shape.batch} x seq {shape.padded_seq}, "
          f"{report.threads} thread(s), median of {shape.rounds} runs, "
          f"{shape.gflop:.2f} GFLOP per batch")
    if report.peak:
        print(f"fp32 peak: {report.peak.gflops:.1f} GFLOP/s ({report.peak.method})")
    header = (f"{'system':<17}{'latency ms':>11}{'seq/s':>10}{'tokens/s':>11}{'GFLOP/s':>9}"
              f"{'% peak':>8}{'bertcpu speedup':>17}{'max abs diff':>14}")
    print(header)
    for result in shape.systems:
        peak = f"{result.percent_of_peak:.0f}%" if result.percent_of_peak is not None else "n/a"
        # speedup_of_bertcpu: this system's time over bertcpu's.
        speed = ("" if result.system.startswith("bertcpu") or result.speedup_of_bertcpu is None
                 else f"{result.speedup_of_bertcpu:.2f}x")
        if result.system == report.reference:
            diff = "(reference)"
        else:
            diff = f"{result.max_abs_diff:.1e}" if result.max_abs_diff is not None else ""
        print(f"{result.system:<17}{result.median_ms:>11.2f}{result.sequences_per_s:>10.1f}"
              f"{result.tokens_per_s:>11.0f}{result.gflops:>9.1f}{peak:>8}{speed:>17}{diff:>14}")


def _parse_peers(text):
    if text is None:
        return []
    peers = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in peers if name not in PEERS]
    if unknown or not peers:
        raise UserError(f"--compare {text!r}: peers are {', '.join(PEERS)} (comma-separated)")
    return list(dict.fromkeys(peers))
