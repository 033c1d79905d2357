"""Task heads against their peers, one interleaved process, the same thread count, medians:

- rerank: one query against 64 documents, pairs truncated to 128 tokens, by a MiniLM-L6
  cross-encoder (the real all-MiniLM-L6-v2 encoder under a fresh one-label head: the shape of
  cross-encoder/ms-marco-MiniLM-L6-v2);
- SPLADE: 8 documents of 128 tokens encoded by a BERT-base masked-LM (random weights: the shape
  of naver/splade-cocondenser), max-pooled log(1 + relu(logits)).

Systems: bertcpu (CrossEncoder / SparseEncoder, tokenization included), sentence-transformers
(CrossEncoder / SparseEncoder on torch), ONNX Runtime and OpenVINO running the exported
transformers model (BertForSequenceClassification / BertForMaskedLM) with the sigmoid or the
SPLADE pooling in numpy, tokenized by transformers' fast tokenizer. Each call's result is checked
against bertcpu's (scores within 1e-3, sparse vectors within 1e-3) before timing.

    python bench/bench_heads.py                     # both workloads, 2 threads, 7 rounds
    python bench/bench_heads.py --lowp              # also bertcpu bfloat16 / int8, with accuracy
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

import bertcpu
from bertcpu import benchmark

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
QUERY = "which enzymes let plants turn sunlight, water and carbon dioxide into sugar?"


def documents(count, seed):
    """`count` documents long enough to fill 128 tokens (truncated by every system)."""
    sentences = benchmark.docstring_sentences(count * 8, seed=seed)
    return [" ".join(sentences[i * 8:(i + 1) * 8]) for i in range(count)]


def build_folders(workdir):
    import torch
    import transformers

    minilm = benchmark.minilm_folder()
    torch.manual_seed(0)
    reranker = os.path.join(workdir, "reranker")
    transformers.BertForSequenceClassification.from_pretrained(minilm, num_labels=1).save_pretrained(reranker)
    splade = os.path.join(workdir, "splade")
    transformers.BertForMaskedLM(transformers.BertConfig()).save_pretrained(splade)
    for folder in (reranker, splade):
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(minilm, name), folder)
    return reranker, splade


def export(folder, architecture, output, path):
    import torch
    import transformers

    model = getattr(transformers, architecture).from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager").eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dynamic = {n: {0: "batch", 1: "seq"} for n in names}
    dynamic[output] = {0: "batch"} if architecture.endswith("Classification") else {0: "batch", 1: "seq"}
    example = tuple(torch.ones((2, 16), dtype=torch.int64) for _ in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(model), example, path, input_names=names, output_names=[output],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return path


def onnxruntime_session(path, config, threads):
    import onnxruntime
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(path, model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size)
    fused_path = path.replace(".onnx", "_fused.onnx")
    fused.save_model_to_file(fused_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(fused_path, options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def openvino_request(path, threads):
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(feeds):
        request.infer(feeds)
        return request.get_output_tensor(0).data
    return run


def splade_numpy(logits, mask):
    """SPLADE max pooling of [batch, seq, vocab] logits in numpy."""
    pooled = np.where(mask[..., None].astype(bool), logits, -np.inf).max(axis=1)
    return np.log1p(np.maximum(pooled, 0))


def rerank_systems(folder, threads, lowp):
    import torch
    import transformers
    from sentence_transformers import CrossEncoder

    docs = documents(64, seed=1)
    pairs = [(QUERY, doc) for doc in docs]
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)

    def feeds():
        enc = hf_tokenizer([QUERY] * len(docs), docs, truncation="longest_first", max_length=128,
                           padding=True, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}

    ours = bertcpu.CrossEncoder.from_pretrained(folder, max_length=128)
    systems = {"bertcpu": lambda: ours.predict(pairs, batch_size=64)}
    if lowp:
        for dtype in ("bfloat16", "int8"):
            low = bertcpu.CrossEncoder.from_pretrained(folder, max_length=128, dtype=dtype)
            systems[f"bertcpu-{dtype}"] = (lambda m: lambda: m.predict(pairs, batch_size=64))(low)
    torch.set_num_threads(threads)
    st = CrossEncoder(folder, device="cpu", max_length=128)
    systems["sentence-transformers"] = lambda: st.predict(pairs, batch_size=64)
    onnx_path = export(folder, "BertForSequenceClassification", "logits",
                       os.path.join(os.path.dirname(folder), "reranker.onnx"))
    sigmoid = lambda x: 1 / (1 + np.exp(-x[:, 0]))  # noqa: E731
    ort = onnxruntime_session(onnx_path, ours.config, threads)
    systems["onnxruntime"] = lambda: sigmoid(ort(feeds()))
    ov = openvino_request(onnx_path, threads)
    systems["openvino"] = lambda: sigmoid(ov(feeds()))
    reference = systems["bertcpu"]()

    spread = float(reference.max() - reference.min())

    def accuracy(scores):
        # The head is random, so the scores are close together: the rankings' agreement means
        # more next to their spread.
        top = set(np.argsort(-reference)[:10].tolist())
        overlap = len(top & set(np.argsort(-scores)[:10].tolist()))
        return (f"max abs score diff {np.abs(scores - reference).max():.2e} (scores span "
                f"{spread:.2e}), top-10 overlap {overlap}/10")
    return systems, reference, accuracy, 64 * 128


def splade_systems(folder, threads, lowp):
    import torch
    import transformers
    from sentence_transformers import SparseEncoder

    docs = documents(8, seed=2)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)

    def feeds():
        enc = hf_tokenizer(docs, truncation=True, max_length=128, padding=True, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}

    ours = bertcpu.SparseEncoder.from_pretrained(folder, max_seq_length=128)
    systems = {"bertcpu": lambda: bertcpu.heads.to_dense(ours.encode(docs, batch_size=8))}
    if lowp:
        for dtype in ("bfloat16", "int8"):
            low = bertcpu.SparseEncoder.from_pretrained(folder, max_seq_length=128, dtype=dtype)
            systems[f"bertcpu-{dtype}"] = (
                lambda m: lambda: bertcpu.heads.to_dense(m.encode(docs, batch_size=8)))(low)
    torch.set_num_threads(threads)
    st = SparseEncoder(folder, device="cpu")
    st.max_seq_length = 128
    systems["sentence-transformers"] = lambda: st.encode(docs, batch_size=8).to_dense().numpy()
    onnx_path = export(folder, "BertForMaskedLM", "logits",
                       os.path.join(os.path.dirname(folder), "splade.onnx"))
    ort = onnxruntime_session(onnx_path, ours.masked_lm.config, threads)

    def ort_run():
        f = feeds()
        return splade_numpy(ort(f), f["attention_mask"])
    systems["onnxruntime"] = ort_run
    ov = openvino_request(onnx_path, threads)

    def ov_run():
        f = feeds()
        return splade_numpy(ov(f), f["attention_mask"])
    systems["openvino"] = ov_run
    reference = systems["bertcpu"]()

    def accuracy(dense):
        cosine = (dense * reference).sum(1) / np.linalg.norm(dense, axis=1) / np.linalg.norm(reference, axis=1)
        same = np.mean([set(np.flatnonzero(a)) == set(np.flatnonzero(b)) for a, b in zip(dense, reference)])
        return (f"max abs diff {np.abs(dense - reference).max():.2e}, min cosine {cosine.min():.6f}, "
                f"same non-zero set {same:.0%}")
    return systems, reference, accuracy, 8 * 128


def run_workload(name, systems, reference, accuracy, tokens, rounds):
    print(f"\n## {name}\n", flush=True)
    notes = {}
    for system, fn in systems.items():
        out = fn()  # warm-up, and the check
        notes[system] = accuracy(out)
        if not system.startswith("bertcpu-") and np.abs(out - reference).max() > 1e-3:
            raise SystemExit(f"{system} disagrees with bertcpu: {notes[system]}")
    times = {system: [] for system in systems}
    names = list(systems)
    for r in range(rounds):
        for system in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            systems[system]()
            times[system].append(time.perf_counter() - start)
    medians = {s: statistics.median(t) * 1e3 for s, t in times.items()}
    fp32_peers = [s for s in systems if not s.startswith("bertcpu")]
    fastest = min(fp32_peers, key=medians.get)
    print("| system | median ms | tokens/s | bertcpu fp32 speedup | accuracy vs bertcpu fp32 |")
    print("|---|---|---|---|---|")
    for system in names:
        print(f"| {system} | {medians[system]:.1f} | {tokens / medians[system] * 1e3:,.0f} | "
              f"{medians[system] / medians['bertcpu']:.2f}x | {notes[system]} |")
    print(f"\nbertcpu fp32 vs the fastest peer ({fastest}): {medians[fastest] / medians['bertcpu']:.2f}x")
    return medians


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workloads", default="rerank,splade")
    parser.add_argument("--lowp", action="store_true", help="also bertcpu bfloat16 and int8")
    args = parser.parse_args(argv)
    bertcpu.set_num_threads(args.threads)
    print("command: python bench/bench_heads.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"cpu_info: {bertcpu.cpu_info()}")
    print(f"load: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as workdir:
        reranker, splade = build_folders(workdir)
        for workload in args.workloads.split(","):
            if workload == "rerank":
                run_workload("rerank: 1 query x 64 documents, 128 tokens (MiniLM-L6 cross-encoder)",
                             *rerank_systems(reranker, args.threads, args.lowp), args.rounds)
            elif workload == "splade":
                medians = run_workload("SPLADE documents: 8 x 128 tokens (BERT-base masked LM)",
                                       *splade_systems(splade, args.threads, args.lowp), args.rounds)
                print(f"SPLADE vs sentence-transformers' SparseEncoder: "
                      f"{medians['sentence-transformers'] / medians['bertcpu']:.2f}x (target >= 2x)")
            else:
                raise SystemExit(f"unknown workload {workload!r}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
