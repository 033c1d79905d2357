"""Accuracy of the low-precision modes on real weights and real text (issue 5): all-MiniLM-L6-v2
sentence embeddings (mean pooling, L2-normalized, as the model's pipeline does) of sentences from
the standard library's docstrings, from bertcpu bfloat16 / int8 and the peers' bf16 / int8 modes,
against PyTorch float32. Prints, per system, the mean and minimum cosine to the float32 vectors
and how often each sentence's nearest neighbour among the others is the same as in float32, and
whether bertcpu's rows meet issue 14's bars. bertcpu-int8 runs once per int8 kernel path of this
CPU (BERTCPU_ISA caps the fp32 path; cpu_info()["int8_kernels"] names the kernels it gets).

    python bench/accuracy_lowp.py                   # 400 sentences, every installed system
    python bench/accuracy_lowp.py --sentences 1000 --systems bertcpu-int8,onnxruntime-int8
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import bertcpu
from bertcpu import Tokenizer, benchmark

DEFAULT_SYSTEMS = ("bertcpu", "bertcpu-bf16", "bertcpu-int8", "openvino-bf16", "onnxruntime-int8",
                   "torch-bf16")


def sentence_vectors(runner, tokenizer, sentences, batch_size=32):
    out = []
    for start in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True,
                        max_length=256, return_tensors="np")
        hidden = runner.run(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        mask = enc["attention_mask"][:, :, None].astype(np.float64)
        mean = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
        out.append(mean / np.linalg.norm(mean, axis=1, keepdims=True))
    return np.concatenate(out)


# Issue 14's bars: (mean cosine, same nearest neighbour) per precision.
BARS = {"bf16": (0.9999, None), "int8": (0.999, 0.98)}


def bertcpu_paths(name):
    """[(label, BERTCPU_ISA value or None)]: one row per int8 kernel path for bertcpu-int8."""
    if name != "bertcpu-int8":
        return [(name, None)]
    paths = [isa for isa in bertcpu.cpu_info()["int8_isas"] if isa != "generic"]
    return [(f"{name} ({_int8_kernels(isa)})", isa) for isa in paths] or [(name, None)]


def _int8_kernels(isa):
    saved = os.environ.get("BERTCPU_ISA")
    os.environ["BERTCPU_ISA"] = isa
    try:
        return bertcpu.cpu_info()["int8_kernels"]
    finally:
        _restore_isa(saved)


def _restore_isa(saved):
    if saved is None:
        os.environ.pop("BERTCPU_ISA", None)
    else:
        os.environ["BERTCPU_ISA"] = saved


def verdict(name, mean_cosine, same):
    if not name.startswith("bertcpu-"):
        return ""
    cosine_bar, neighbour_bar = BARS[benchmark.system_precision(name.split(" ")[0])]
    met = mean_cosine >= cosine_bar and (neighbour_bar is None or same >= neighbour_bar)
    bars = f"cosine >= {cosine_bar}" + (f", neighbour >= {neighbour_bar:.0%}" if neighbour_bar
                                        else "")
    return f"{'met' if met else 'NOT met'} ({bars})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    installed = benchmark.installed_systems()
    for name in [s for s in systems if s not in installed]:
        print(f"{name}: not installed, left out", file=sys.stderr)
    systems = [s for s in systems if s in installed]

    folder = benchmark.minilm_folder()
    sentences = benchmark.docstring_sentences(args.sentences)
    tokenizer = Tokenizer.from_pretrained(folder)
    with tempfile.TemporaryDirectory(prefix="bertcpu-accuracy-") as workdir:
        reference = benchmark.make_runner("torch", workdir)
        reference.prepare(folder, args.threads)
        expected = sentence_vectors(reference, tokenizer, sentences)
        reference.close()
        expected_neighbours = benchmark.nearest_neighbours(expected)
        similarity = expected @ expected.T
        np.fill_diagonal(similarity, -np.inf)
        top = np.sort(similarity, axis=1)[:, ::-1]
        close = float(np.mean(top[:, 0] - top[:, 1] < 0.003))
        print(f"all-MiniLM-L6-v2, {len(sentences)} sentences, reference: PyTorch float32; "
              f"{close:.1%} of the sentences have a runner-up neighbour within 0.003 cosine of "
              f"the nearest")
        print()
        print("| system | mean cosine | min cosine | same nearest neighbour | issue 14 bars |")
        print("|---|---:|---:|---:|---|")
        for name in systems:
            for label, isa in bertcpu_paths(name):
                saved = os.environ.get("BERTCPU_ISA")
                if isa is not None:
                    os.environ["BERTCPU_ISA"] = isa  # read when the model loads
                try:
                    runner = benchmark.make_runner(name, workdir)
                    runner.prepare(folder, args.threads)
                finally:
                    _restore_isa(saved)
                vectors = sentence_vectors(runner, tokenizer, sentences)
                runner.close()
                cosines = (vectors * expected).sum(axis=1)
                same = float(np.mean(benchmark.nearest_neighbours(vectors)
                                     == expected_neighbours))
                print(f"| {label} | {cosines.mean():.6f} | {cosines.min():.6f} | {same:.1%} | "
                      f"{verdict(name, cosines.mean(), same)} |", flush=True)


if __name__ == "__main__":
    main()
