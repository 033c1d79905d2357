"""Rows/s of sentence embedding through Ray Data (bertcpu.ray) against SentenceEncoder called
directly, on one machine: what Ray's scheduling, actor start-up and data movement cost.

    python bench/bench_ray.py                          # 8,000 sentences, 3 rounds, all-MiniLM-L6-v2
    python bench/bench_ray.py --rows 20000 --rounds 5 --json ray.json

Contenders, each over the same generated sentences (bench_tokenizer's English-ish generator: 4 to
300 words, so some are truncated at the model's 256 tokens):
- direct: ``SentenceEncoder.encode`` in this process, all the machine's CPUs as threads (model
  loaded once beforehand, as a long-running process would have it).
- ray, A actors x T threads: ``embed_dataset`` on ``ray.data.from_arrow`` (blocks of one Ray
  batch each, as a read of many files would give), materialized in Ray's object store, with T
  engine threads per actor for T = 1, 2, 4 (up to the CPU count) and as many actors as
  ``plan_actor_pool`` fits; T = 1 is embed_dataset's default. The time includes starting the
  actors and loading the model in each, which a job pays once.
- ray files: ``embed_files`` from a Parquet file to a folder of Parquet files (reading, embedding,
  writing in order), embed_dataset's default pool.
Ray is started once (``ray.init`` with this machine's CPUs, not timed). Rounds are interleaved
(each round runs every contender once) and the median counts, so that load from other processes
hits all of them alike. Every contender's vectors are checked equal to the direct ones first.
"""
import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

import bertcpu
from bertcpu.ray import embed_dataset, embed_files, plan_actor_pool
from bertcpu.runtime import available_cpus

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_tokenizer import make_sentences  # noqa: E402
from bertcpu.benchmark import minilm_folder  # noqa: E402


def vectors_of(dataset):
    table = pa.concat_tables(dataset.iter_batches(batch_format="pyarrow", batch_size=None))
    return table.column("id").to_numpy(), np.stack(table.column("embedding").to_numpy(
        zero_copy_only=False))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512, help="rows per Ray batch")
    parser.add_argument("--model",
                        help="model folder (default: all-MiniLM-L6-v2 from its PyPI wheel)")
    parser.add_argument("--json", metavar="FILE", help="also write every round's time as JSON")
    args = parser.parse_args()

    model = pathlib.Path(args.model) if args.model else minilm_folder()
    cpus = available_cpus()
    texts = make_sentences(model / "vocab.txt", args.rows)
    table = pa.table({"id": np.arange(len(texts)), "text": texts})
    workspace = pathlib.Path(tempfile.mkdtemp(prefix="bench-ray-"))
    pq.write_table(table, workspace / "input.parquet")
    blocks = [table.slice(start, args.batch_size)
              for start in range(0, len(texts), args.batch_size)]

    encoder = bertcpu.SentenceEncoder.from_pretrained(model, num_threads=cpus)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    # Vectors in row order, so that every contender can be checked against the direct ones.
    ray.data.DataContext.get_current().execution_options.preserve_order = True

    results = {}

    def direct():
        results["direct"] = encoder.encode(texts)

    def through_ray(name, **options):
        def run():
            dataset = embed_dataset(ray.data.from_arrow(blocks), model,
                                    batch_size=args.batch_size, **options).materialize()
            results[name] = vectors_of(dataset)
        return run

    def files():
        output = workspace / "output"
        shutil.rmtree(output, ignore_errors=True)
        embed_files(str(workspace / "input.parquet"), str(output), model,
                    batch_size=args.batch_size)
        results["ray files"] = vectors_of(ray.data.read_parquet(str(output)))

    contenders = {"direct": direct}
    for threads in (1, 2, 4):
        if threads <= cpus:
            plan = plan_actor_pool(num_threads=threads)
            name = (f"ray, {plan.size} actor{'s' * (plan.size > 1)} x {threads} "
                    f"thread{'s' * (threads > 1)}")
            contenders[name] = through_ray(name, num_threads=threads)
    contenders["ray files"] = files
    times = {name: [] for name in contenders}
    for round_number in range(args.rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            if name != "direct":
                ids, vectors = results[name]
                assert np.array_equal(ids, np.arange(len(texts))), f"{name}: rows out of order"
                assert np.array_equal(vectors, results["direct"]), f"{name}: vectors differ"
        print(f"round {round_number + 1}: " + ", ".join(f"{name} {t[-1]:.1f}s"
                                                        for name, t in times.items()),
              file=sys.stderr)
    ray.shutdown()
    shutil.rmtree(workspace)

    medians = {name: statistics.median(t) for name, t in times.items()}
    direct_rate = len(texts) / medians["direct"]
    print(f"{len(texts)} sentences, model {model.name if args.model else 'all-MiniLM-L6-v2'}, "
          f"{cpus} CPUs, Ray {ray.__version__}, Ray batches of {args.batch_size} rows; "
          f"median of {args.rounds} rounds")
    print(f"{'contender':<28}{'seconds':>9}{'rows/s':>9}{'vs direct':>11}")
    for name, seconds in medians.items():
        rate = len(texts) / seconds
        print(f"{name:<28}{seconds:>9.2f}{rate:>9.0f}{rate / direct_rate:>10.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": len(texts), "cpus": cpus, "ray": ray.__version__,
                       "batch_size": args.batch_size, "seconds": times},
                      f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
