"""GEMM throughput of the fp32, bf16 and int8 kernels at BERT-base's layer shapes.

Times act(x @ w.T + bias) through bertcpu._core.kernels.PackedWeight: weights packed once, then
the GEMM alone (for bf16 and int8 including the per-call conversion / quantization of x). Each
round runs every path once, `reps` back-to-back calls of about --seconds, paths interleaved; a
path's figure is its best round. Prints GFLOP/s (2*M*K*N per call; integer ops for int8) and the
speedup of each path over the first.

    PYTHONPATH=. python bench/bench_gemm.py --threads 1,2

On a machine other processes share, --clock thread (1 thread only) times the CPU time of the
calling thread, which time slices given to other processes do not inflate.

The same weights stay in cache from call to call. --copies N cycles through N packed copies
instead (as a model's layers do), so that with enough of them the weights stream from memory: what
limits small batches.
"""
import argparse
import time

import numpy as np

from bertcpu import _core

K = _core.kernels
SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]  # K x N: QKV, out, FFN in, FFN out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rows", default="1024,128,16", help="comma-separated M values")
    parser.add_argument("--paths", default="fp32:avx512,bf16:avx512,int8:avx512",
                        help="precision:isa pairs; the first is the baseline of the speedups")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.02, help="length of one measurement")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="thread: CPU time of the calling thread (only with 1 thread)")
    parser.add_argument("--copies", type=int, default=1,
                        help="packed copies of each weight, run in turn (weights out of cache)")
    args = parser.parse_args()

    paths = [tuple(p.split(":")) for p in args.paths.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    if args.clock == "thread" and thread_counts != [1]:
        parser.error("--clock thread needs --threads 1")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    rng = np.random.default_rng(0)
    print(f"{_core.cpu_info()['brand']}; low-precision paths: {K.lowp_isas()}; "
          f"clock: {args.clock}, best of {args.rounds} rounds, {args.copies} weight copies")
    header = f"{'threads':>7} {'M':>5} {'K x N':>10} " + " ".join(
        f"{p + ':' + i:>12}" for p, i in paths) + "   speedup vs " + ":".join(paths[0])
    print(header + "\n" + "-" * len(header))
    for threads in thread_counts:
        _core.set_num_threads(threads)
        for m in [int(v) for v in args.rows.split(",")]:
            for k, n in SHAPES:
                x = rng.standard_normal((m, k)).astype(np.float32)
                w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
                b = rng.standard_normal(n).astype(np.float32)
                packed = [[K.PackedWeight(w, b, p, i) for _ in range(args.copies)]
                          for p, i in paths]
                flops = 2.0 * m * k * n
                reps = max(1, int(args.seconds * 100e9 * threads / flops / args.copies))
                best = [float("inf")] * len(packed)
                for copies in packed:
                    copies[0].run(x)  # warm-up: scratch memory, thread pool
                for _ in range(args.rounds):
                    for j, copies in enumerate(packed):
                        t0 = clock()
                        for _ in range(reps):
                            for p in copies:
                                p.run(x)
                        best[j] = min(best[j], (clock() - t0) / (reps * args.copies))
                rates = [flops / t / 1e9 for t in best]
                speedups = " ".join(f"{r / rates[0]:5.2f}x" for r in rates[1:])
                print(f"{threads:>7} {m:>5} {f'{k}x{n}':>10} "
                      + " ".join(f"{r:12.1f}" for r in rates) + f"   {speedups}", flush=True)


if __name__ == "__main__":
    main()
