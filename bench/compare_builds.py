"""Two builds of bertcpu against each other: interleaved processes, random-weight model, medians.

Each build is a folder holding a built `bertcpu` package (for example a copy of the repository's
bertcpu/ after `python setup.py build_ext --inplace`, or a `git worktree` of another commit built in
place). Rounds alternate the builds, one fresh process per build and round, so that both see the
same drift of a shared machine; a round times `--calls` forward passes per shape after one warm-up
call. Prints each build's median over the rounds and the median of the per-round ratios A/B
(above 1: B is faster). A round's figure is the median of its calls, or with `--statistic min`
their minimum: on a host whose other tenants slow calls now and then, the fastest call is closest
to the build's own speed (in one such run per-round ratios stayed within ~5% where medians
scattered by 30%; in busier periods no statistic helps and only more rounds do).

    python bench/compare_builds.py /tmp/build_a /tmp/build_b --shapes 1x128,8x128 --dtype bfloat16

Only bertcpu runs; bench_model.py compares against the peers.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

MODELS = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
}


def run_worker(args):
    """In the child process: time the shapes with the bertcpu found on sys.path, print JSON."""
    import time

    import numpy as np

    import bertcpu
    from bertcpu.config import BertConfig

    bertcpu.set_num_threads(args.threads)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **MODELS[args.model])
    model = bertcpu.BertModel.from_config(config, seed=0, dtype=args.dtype)
    rng = np.random.default_rng(0)
    figures = {}
    for shape in args.shapes.split(","):
        batch, seq = (int(v) for v in shape.split("x"))
        ids = rng.integers(1000, 30000, (batch, seq))
        model(ids)
        times = []
        for _ in range(args.calls):
            if args.pause_ms:
                time.sleep(args.pause_ms / 1e3)
            start = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - start)
        pick = min if args.statistic == "min" else statistics.median
        figures[shape] = pick(times) * 1e3
    print(json.dumps({"file": bertcpu.__file__, "ms": figures}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_a", nargs="?", help="folder holding build A's bertcpu package")
    parser.add_argument("build_b", nargs="?", help="folder holding build B's bertcpu package")
    parser.add_argument("--model", choices=sorted(MODELS), default="bert-base")
    parser.add_argument("--shapes", default="1x16,1x128,8x128", help="batch x seq, comma-separated")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "int8"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="processes per build")
    parser.add_argument("--calls", type=int, default=10, help="timed forward passes per shape")
    parser.add_argument("--pause-ms", type=float, default=0.0,
                        help="idle time before each timed call (a service between requests: the "
                             "pool's threads fall asleep after 0.2 ms)")
    parser.add_argument("--statistic", choices=["median", "min"], default="median",
                        help="a round's figure: the median or the minimum of its calls")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)
    if not (args.build_a and args.build_b):
        parser.error("give the folders of build A and build B")

    results = {"A": [], "B": []}
    worker_args = [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model,
                   "--shapes", args.shapes, "--dtype", args.dtype, "--threads", str(args.threads),
                   "--calls", str(args.calls), "--pause-ms", str(args.pause_ms),
                   "--statistic", args.statistic]
    for round_index in range(args.rounds):
        for label, folder in (("A", args.build_a), ("B", args.build_b)):
            env = dict(os.environ, PYTHONPATH=os.path.abspath(folder))
            # Run from the build's folder so that no other bertcpu (the repository's, an
            # installed one) shadows it.
            out = subprocess.run(worker_args, env=env, cwd=folder, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"build {label} ({folder}) failed:\n{out.stderr.strip()}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            expected = os.path.realpath(os.path.join(folder, "bertcpu"))
            if not os.path.realpath(result["file"]).startswith(expected):
                sys.exit(f"build {label}: imported {result['file']}, not the build in {folder}")
            results[label].append(result["ms"])
            print(f"round {round_index + 1} {label}: " + ", ".join(
                f"{shape} {ms:.2f} ms" for shape, ms in result["ms"].items()), flush=True)

    pause = f", {args.pause_ms:g} ms idle before each" if args.pause_ms else ""
    print(f"\n{args.model} {args.dtype}, {args.threads} threads, {args.rounds} rounds x "
          f"{args.calls} calls{pause}, {args.statistic} per round")
    print(f"{'shape':>8} {'A ms':>9} {'B ms':>9} {'A/B':>6}   per round")
    for shape in args.shapes.split(","):
        a = [r[shape] for r in results["A"]]
        b = [r[shape] for r in results["B"]]
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{shape:>8} {statistics.median(a):9.2f} {statistics.median(b):9.2f} "
              f"{statistics.median(ratios):6.3f}   " + " ".join(f"{r:.3f}" for r in ratios))


if __name__ == "__main__":
    main()
