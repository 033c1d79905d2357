"""int8 schemes for all-MiniLM-L6-v2 tried in numpy before any C++ (issue 14): the model in fp32
with its real weights, every dense layer replaceable by an exact emulation of bertcpu's int8
arithmetic (gemm_lowp.h: symmetric int8 weights per output channel; per-token asymmetric 0..255
activations with a zero point over [min(x, 0), max(x, 0)], each row's largest |x| kept out of
them and added back in the epilogue as the exact float times its int8 weights; int32 sums;
PackedLinearInt8's input smoothing) or a variant of it, and attention's products in fp32 or, as
bertcpu's low-precision modes run them, bf16. Scores sentence vectors as bench/accuracy_lowp.py
does (mean pooling, L2-normalized, against fp32: mean / min cosine, same nearest neighbour) on
lists of benchmark.docstring_sentences (a count and a seed each; the neighbour figure moves by
about a point from list to list, so a bar is checked on several). "current" reproduces
bertcpu-int8 (every dense layer int8, top1-apart, attention in bf16) to about 1e-6 of mean cosine,
"avx2" the avx2 path (activations 0..127, attention in fp32); "qkv-bf16" and "qkv-fp32" are the
avx512 and avx2 schemes before top1-apart, the other names candidates for the neighbour bar.

    python bench/int8_emulation.py --sentences 1000 --schemes current,qkv-bf16
    python bench/int8_emulation.py --sentences 400:0,400:1,400:2,400:3 --schemes current,bf16
"""
import argparse
from functools import partial

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf

from bertcpu import Tokenizer, benchmark

F = np.float32
KINDS = ("qkv", "attention_output", "ffn_in", "ffn_out")


# ---- bertcpu's rules, in the same fp32 operations ------------------------------------------

def quantize_weight(w):
    """Per output channel: integer-valued q (float64: the products stay exact) and fp32 scale."""
    amax = np.abs(w).max(1).astype(F)
    inv = np.where(amax > 0, F(127) / np.where(amax > 0, amax, F(1)), F(0)).astype(F)
    return np.rint(w * inv[:, None]).astype(np.float64), (amax / F(127)).astype(F)


def row_parameters(x, q_max=255):
    """Per row: inv, scale, zero point of Int8Kernels::quantize_row for codes 0..q_max."""
    lo = np.minimum(x.min(1), 0).astype(F)
    hi = np.maximum(x.max(1), 0).astype(F)
    span = (hi - lo).astype(F)
    levels = F(q_max)
    inv = np.where(span > 0, levels / np.where(span > 0, span, F(1)), F(0)).astype(F)
    return inv, (span / levels).astype(F), np.clip(np.rint(-lo * inv), 0, q_max)


def quantize_rows(x, q_max=255):
    inv, scale, zp = row_parameters(x, q_max)
    q = np.clip(np.rint(x * inv[:, None]) + zp[:, None], 0, q_max)
    return q, zp, scale


def int8_product(q, zp, scale_a, qw, scale_w, b, top=None, top_value=None):
    """The micro-kernels' epilogue, left to right in fp32: (float(acc - zp * colsum) * scale_a
    + top_value * float(qw[top])) * scale_w + bias (no top term for the old kernels)."""
    centered = (q @ qw.T - zp[:, None] * qw.sum(1)[None, :]).astype(F)
    acc = centered * scale_a[:, None]
    if top is not None:
        acc = acc + top_value[:, None] * qw[:, top].T.astype(F)
    return (acc * scale_w[None, :] + b).astype(F)


def smoothing(w, input_range):
    """PackedLinearInt8::pack_weight's t[k] = sqrt(column max |w| / input_range[k])."""
    m = np.abs(w).max(0)
    ok = (m > 0) & (input_range > 0)
    return np.where(ok, np.sqrt(np.where(ok, m, 1) / np.where(ok, input_range, 1)), 1).astype(F)


def bf16(a):
    u = a.astype(F).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(F)


# ---- dense layer variants: f(x, w, b, ln) with ln = (gamma, beta) of the LayerNorm whose output
# x is (Q/K/V and the first feed-forward layer), else None --------------------------------------

def fp32(x, w, b, ln):
    return (x @ w.T + b).astype(F)


def bfloat16(x, w, b, ln):
    return (bf16(x).astype(np.float64) @ bf16(w).astype(np.float64).T).astype(F) + b


def smoothed(x, w, ln):
    """x * t and w / t, t = smoothing(w, |gamma| + |beta|): the product unchanged, range moved."""
    t = smoothing(w, np.abs(ln[0]) + np.abs(ln[1]))
    return (x * t).astype(F), (w / t).astype(F)


def int8(x, w, b, ln, smooth=False):
    """The kernels before top1-apart: the whole row quantized."""
    if smooth:
        x, w = smoothed(x, w, ln)
    return int8_product(*quantize_rows(x), *quantize_weight(w), b)


def int8_smoothed(x, w, b, ln):
    return int8(x, w, b, ln, smooth=True)


def weights_only(x, w, b, ln):
    qw, sw = quantize_weight(w)
    return (x.astype(np.float64) @ (qw * sw[:, None]).T).astype(F) + b


def activations_only(x, w, b, ln):
    q, zp, scale = quantize_rows(x)
    return (((q - zp[:, None]) * scale[:, None]) @ w.astype(np.float64).T).astype(F) + b


def quantize_rows_symmetric(x):
    """255 levels symmetric around 0 (zp 128, scale max|x| / 127): quantize_rows' alternative
    that needs no zero-point correction, at the cost of half the levels on a skewed row."""
    amax = np.abs(x).max(1).astype(F)
    inv = np.where(amax > 0, F(127) / np.where(amax > 0, amax, F(1)), F(0)).astype(F)
    zp = np.full(len(x), 128.0)
    return np.rint(x * inv[:, None]) + 128, zp, (amax / F(127)).astype(F)


def top_apart(x, count, quantize=quantize_rows):
    """Each row's `count` largest |x| out of its quantization (the first index of a tie first, as
    bertcpu picks its top): their columns and exact values [M, count], and quantize(the rest,
    those set to 0)."""
    top = np.argsort(-np.abs(x), axis=1, kind="stable")[:, :count]
    rest = x.copy()
    np.put_along_axis(rest, top, 0, 1)
    return top, np.take_along_axis(x, top, 1), quantize(rest)


def int8_top1(x, w, b, ln, smooth=False):
    """bertcpu's int8 product: each row's largest |x| (often ~20x the row's rms, e.g. channel 99
    of the [CLS] rows) would set the scale of the whole row; it leaves the row and comes back in
    the epilogue as the exact float times its int8 weights."""
    if smooth:
        x, w = smoothed(x, w, ln)
    top, values, rows = top_apart(x, 1)
    return int8_product(*rows, *quantize_weight(w), b, top[:, 0], values[:, 0])


def int8_top1_smoothed(x, w, b, ln):
    return int8_top1(x, w, b, ln, smooth=True)


def channel_weight(w):
    """quantize_weight's int8 weights, dequantized (float64)."""
    qw, sw = quantize_weight(w)
    return qw * sw[:, None]


def grouped_weight(w, group):
    """Symmetric int8 with one scale per output channel and `group` consecutive inputs (the last
    group shorter if group does not divide K), dequantized: a kernel would scale each group's
    int32 sums."""
    return np.concatenate([channel_weight(w[:, k:k + group])
                           for k in range(0, w.shape[1], group)], 1)


def extended_weight(w, count):
    """Per output channel, the `count` largest |w| out of the scale (max|rest| / 127) and kept as
    rint(w / scale), integers beyond int8: a kernel's sparse extra term per channel."""
    amax = -np.sort(-np.abs(w), 1)[:, count].astype(F)
    inv = np.where(amax > 0, F(127) / np.where(amax > 0, amax, F(1)), F(0)).astype(F)
    return np.rint(w * inv[:, None]) * (amax / F(127))[:, None].astype(np.float64)


def calibration_sentences(count=256):
    """Docstring sentences outside the lists the figures use (1000 of seed 0, 400 of seeds 1-3)."""
    used = set(benchmark.docstring_sentences(1000)).union(
        *(benchmark.docstring_sentences(400, seed) for seed in (1, 2, 3)))
    return [s for s in benchmark.docstring_sentences(2600, 99) if s not in used][:count]


def random_token_sequences(count=256, seed=123):
    """Data-free calibration: [CLS], 8-63 word-piece ids drawn uniformly from the vocabulary's words
    (bert-base-uncased ids 1996-29611), [SEP]."""
    rng = np.random.default_rng(seed)
    return [np.concatenate([[101], rng.integers(1996, 29612, int(rng.integers(8, 64))), [102]])
            for _ in range(count)]


CALIBRATION = {"text": "sentences"}  # what hessian() runs: --calibration
_HESSIANS = {}
_MEANS = {}


def hessian(w):
    """X^T X of the fp32 inputs the layer with weight w (smoothed or not) sees over
    calibration_sentences(), all layers' found by one fp32 run at first use (their means too)."""
    if not _HESSIANS:
        def record(x, w, b, ln):
            x64 = x.astype(np.float64)
            _HESSIANS[w.tobytes()] = x64.T @ x64
            _MEANS[w.tobytes()] = x64.mean(0)
            if ln is not None:
                xs, ws = smoothed(x, w, ln)
                xs = xs.astype(np.float64)
                _HESSIANS[ws.tobytes()] = xs.T @ xs
                _MEANS[ws.tobytes()] = xs.mean(0)
            return fp32(x, w, b, ln)
        folder = benchmark.minilm_folder()
        if CALIBRATION["text"] == "random-tokens":
            sequences = random_token_sequences()
        else:
            tokenizer = Tokenizer.from_pretrained(folder)
            sequences = [tokenizer([s], truncation=True, max_length=256, return_tensors="np")
                         ["input_ids"][0] for s in calibration_sentences()]
        MiniLM(folder).sentence_vectors(sequences, per_kind(record))
    return _HESSIANS[w.tobytes()]


def input_mean(w):
    """The mean calibration input of the layer with weight w (as hessian() records them)."""
    hessian(w)
    return _MEANS[w.tobytes()]


def gptq_weight(w, damp=0.01):
    """quantize_weight's scales, the int8 values chosen column after column with each column's
    rounding error pushed onto the columns not yet rounded, weighted by the calibration inputs'
    X^T X (GPTQ, Frantar et al. 2022): the same kernels, weights that minimize the output error."""
    h = hessian(w)
    h = h + damp * np.mean(np.diag(h)) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: the inverse's Cholesky factor
    s = quantize_weight(w)[1].astype(np.float64)
    work = w.astype(np.float64)
    q = np.zeros_like(work)
    for k in range(w.shape[1]):
        q[:, k] = np.clip(np.rint(work[:, k] / s), -127, 127)
        err = (work[:, k] - q[:, k] * s) / u[k, k]
        work[:, k + 1:] -= err[:, None] * u[k, k + 1:][None, :]
    return q * s[:, None]



def gptq_grouped_weight(w, group, damp=0.01):
    """gptq_weight with one scale per output channel and `group` inputs, each group's scales taken
    from the error-updated columns as the group starts (grouped_weight's kernel change as well)."""
    h = hessian(w)
    h = h + damp * np.mean(np.diag(h)) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    work = w.astype(np.float64)
    q = np.zeros_like(work)
    for k in range(w.shape[1]):
        if k % group == 0:
            amax = np.abs(work[:, k:k + group]).max(1)
            s = np.where(amax > 0, amax / 127, 1.0)
        q[:, k] = np.clip(np.rint(work[:, k] / s), -127, 127) * s
        work[:, k + 1:] -= ((work[:, k] - q[:, k]) / u[k, k])[:, None] * u[k, k + 1:][None, :]
    return q

def variant(x, w, b, ln, smooth=False, count=1, weight=channel_weight, top_weight=None,
            quantize=quantize_rows, bias_correction=False):
    """int8_top1 changed on either side, with dequantized values in float64 (the same products up
    to fp32 rounding): `count` values apart per row, the rest quantized by `quantize`, the weight
    as weight(w) has it; the values apart times top_weight(w) (a higher-precision copy of the
    weights) if given, else times weight(w) as well."""
    if smooth:
        x, w = smoothed(x, w, ln)
    top, values, (q, zp, scale) = top_apart(x, count, quantize)
    apart = np.zeros(x.shape)
    np.put_along_axis(apart, top, values, 1)
    rest = (q - zp[:, None]) * scale[:, None]
    wq = weight(w)
    if bias_correction:
        b = (b - (wq - w.astype(np.float64)) @ input_mean(w)).astype(F)
    if top_weight is None:
        return ((rest + apart) @ wq.T).astype(F) + b
    return (rest @ wq.T + apart @ top_weight(w).astype(np.float64).T).astype(F) + b


def v_in_bf16(x, w, b, ln):
    """Q/K/V with V (the last third of the rows) in bf16, Q and K as int8_top1."""
    n = 2 * len(w) // 3
    return np.concatenate([int8_top1(x, w[:n], b[:n], ln), bfloat16(x, w[n:], b[n:], ln)], 1)


def unrounded(a):
    return a


def per_kind(default, attention=unrounded, **by_kind):
    """kind -> dense layer variant, "attention" -> attention's rounding: bertcpu's bf16 and int8
    modes run attention's products in bf16 (fp32 sums), the modes before them in fp32."""
    return lambda kind: attention if kind == "attention" else by_kind.get(kind, default)


def fp32_attention(scheme):
    return lambda kind: unrounded if kind == "attention" else scheme(kind)


def changed(**options):
    """"current" with variant(**options) in every dense layer (ffn_in smoothed)."""
    return per_kind(partial(variant, **options), attention=bf16,
                    ffn_in=partial(variant, smooth=True, **options))


SCHEMES = {
    "current": per_kind(int8_top1, attention=bf16, ffn_in=int8_top1_smoothed),
    "qkv-bf16": per_kind(int8, qkv=bfloat16, ffn_in=int8_smoothed),
    "qkv-fp32": per_kind(int8, qkv=fp32, ffn_in=int8_smoothed),
    "no-top1": per_kind(int8, ffn_in=int8_smoothed),
    "all-int8": per_kind(int8),
    "all-int8-smoothed": per_kind(int8, qkv=int8_smoothed, ffn_in=int8_smoothed),
    "weights-only": per_kind(weights_only),
    "activations-only": per_kind(activations_only),
    "bf16": per_kind(bfloat16, attention=bf16),
    # Candidates for the neighbour bar, each "current" with one change (or two, joined by "+").
    "top2-apart": changed(count=2),
    "top4-apart": changed(count=4),
    "symmetric-rows": changed(quantize=quantize_rows_symmetric),
    # avx2 without VNNI: activations 0..127 (vpmaddubsw's int16 pair sums), attention in fp32.
    "avx2": fp32_attention(changed(quantize=partial(quantize_rows, q_max=127))),
    "top-weight-bf16": changed(top_weight=bf16),
    "int8-but-v": per_kind(int8_top1, attention=bf16, qkv=v_in_bf16, ffn_in=int8_top1_smoothed),
}
for _group in (64, 128, 256, 384):
    SCHEMES[f"group{_group}"] = changed(weight=partial(grouped_weight, group=_group))
for _count in (1, 2):
    SCHEMES[f"extended{_count}"] = changed(weight=partial(extended_weight, count=_count))
    SCHEMES[f"extended{_count}+top-weight-bf16"] = changed(
        weight=partial(extended_weight, count=_count), top_weight=bf16)
SCHEMES["group64+top4-apart"] = changed(count=4, weight=partial(grouped_weight, group=64))
SCHEMES["gptq"] = changed(weight=gptq_weight)
for _group in (64, 128):
    SCHEMES[f"gptq-group{_group}"] = changed(weight=partial(gptq_grouped_weight, group=_group))
# Bias correction: each layer's bias less (int8 weight - weight) @ mean calibration input.
SCHEMES["biascorr"] = changed(bias_correction=True)
SCHEMES["gptq+top-weight-bf16"] = changed(weight=gptq_weight, top_weight=bf16)
SCHEMES["gptq+top4-apart"] = changed(count=4, weight=gptq_weight)
SCHEMES["gptq+top4-apart+top-weight-bf16"] = changed(count=4, weight=gptq_weight, top_weight=bf16)
for _kind in KINDS:
    # One kind in bf16, the others as "current"; one kind alone in (old) int8, the others fp32.
    SCHEMES[f"int8-but-{_kind}"] = per_kind(int8_top1, attention=bf16,
                                            **{"ffn_in": int8_top1_smoothed, _kind: bfloat16})
    SCHEMES[f"only-{_kind}"] = per_kind(fp32, **{_kind: int8})


# ---- the model ------------------------------------------------------------------------------

class MiniLM:
    def __init__(self, folder):
        self.w = {k: v.astype(F) for k, v in load_file(f"{folder}/model.safetensors").items()}
        self.hidden = self.w["embeddings.word_embeddings.weight"].shape[1]
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder."))
        self.heads = 12

    def layernorm(self, x, prefix):
        g, b = self.w[prefix + ".weight"], self.w[prefix + ".bias"]
        mean = x.mean(-1, keepdims=True, dtype=np.float64).astype(F)
        d = x - mean
        var = (d * d).mean(-1, keepdims=True, dtype=np.float64).astype(F)
        return (d / np.sqrt(var + F(1e-12)) * g + b).astype(F), (g, b)

    def sentence_vectors(self, sequences, dense):
        """sequences: token id arrays; dense(kind) -> layer variant, dense("attention") -> the
        rounding of attention's operands (Q, K, V, probabilities)."""
        w, H, rounded = self.w, self.hidden, dense("attention")
        lengths = [len(s) for s in sequences]
        ids = np.concatenate(sequences)
        positions = np.concatenate([np.arange(n) for n in lengths])
        x, ln = self.layernorm(w["embeddings.word_embeddings.weight"][ids]
                               + w["embeddings.position_embeddings.weight"][positions]
                               + w["embeddings.token_type_embeddings.weight"][0],
                               "embeddings.LayerNorm")
        offsets = np.cumsum([0] + lengths)
        d = H // self.heads
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            names = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
            qkv = dense("qkv")(x, np.concatenate([w[n + ".weight"] for n in names]),
                               np.concatenate([w[n + ".bias"] for n in names]), ln)
            ctx = np.empty_like(x)
            for a, e in zip(offsets[:-1], offsets[1:]):
                q, k, v = (rounded(qkv[a:e, i * H:(i + 1) * H]).reshape(e - a, self.heads, d)
                           .transpose(1, 0, 2) for i in range(3))
                s = (q @ k.transpose(0, 2, 1)) / F(np.sqrt(d))
                s = np.exp(s - s.max(-1, keepdims=True))
                s = rounded(s / s.sum(-1, keepdims=True))
                ctx[a:e] = (s @ v).transpose(1, 0, 2).reshape(-1, H)
            out = dense("attention_output")(ctx, w[p + "attention.output.dense.weight"],
                                            w[p + "attention.output.dense.bias"], None)
            x1, ln1 = self.layernorm(out + x, p + "attention.output.LayerNorm")
            inter = dense("ffn_in")(x1, w[p + "intermediate.dense.weight"],
                                    w[p + "intermediate.dense.bias"], ln1)
            inter = (inter * F(0.5) * (F(1) + erf(inter / F(np.sqrt(2))))).astype(F)
            out = dense("ffn_out")(inter, w[p + "output.dense.weight"],
                                   w[p + "output.dense.bias"], None)
            x, ln = self.layernorm(out + x1, p + "output.LayerNorm")
        means = np.stack([x[a:e].astype(np.float64).mean(0)
                          for a, e in zip(offsets[:-1], offsets[1:])])
        return means / np.linalg.norm(means, axis=1, keepdims=True)


def sentence_lists(spec):
    """"1000,400:1" -> [(1000, 0), (400, 1)]: counts of docstring_sentences and their seeds."""
    return [(int(count), int(seed or 0)) for count, _, seed in
            (item.partition(":") for item in spec.split(","))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=sentence_lists, default="400",
                        help="COUNT[:SEED],...: lists of docstring_sentences (seed 0 by default), "
                             "each sentence run once")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--calibration", choices=("sentences", "random-tokens"),
                        default="sentences",
                        help="the calibration inputs of gptq* and biascorr: docstring sentences "
                             "outside the scored lists, or random word pieces (data-free)")
    parser.add_argument("--fp32-attention", action="store_true",
                        help="attention in fp32 in every scheme (bertcpu before 9c1e39d)")
    args = parser.parse_args(argv)
    CALIBRATION["text"] = args.calibration
    folder = benchmark.minilm_folder()
    tokenizer = Tokenizer.from_pretrained(folder)
    lists = [benchmark.docstring_sentences(count, seed) for count, seed in args.sentences]
    unique = sorted(set().union(*lists))
    sequences = [tokenizer([s], truncation=True, max_length=256, return_tensors="np")
                 ["input_ids"][0] for s in unique]
    index = {s: i for i, s in enumerate(unique)}
    rows = [np.array([index[s] for s in sentences]) for sentences in lists]
    model = MiniLM(folder)
    expected = model.sentence_vectors(sequences, per_kind(fp32))
    expected_neighbours = [benchmark.nearest_neighbours(expected[r]) for r in rows]
    print("all-MiniLM-L6-v2, reference: this model in fp32")
    print()
    print("| scheme | sentences (seed) | mean cosine | min cosine | same nearest neighbour |")
    print("|---|---|---:|---:|---:|")
    for name in args.schemes.split(","):
        scheme = fp32_attention(SCHEMES[name]) if args.fp32_attention else SCHEMES[name]
        vectors = model.sentence_vectors(sequences, scheme)
        for (count, seed), r, neighbours in zip(args.sentences, rows, expected_neighbours):
            cosines = (vectors[r] * expected[r]).sum(axis=1)
            same = np.mean(benchmark.nearest_neighbours(vectors[r]) == neighbours)
            print(f"| {name} | {count} ({seed}) | {cosines.mean():.6f} | {cosines.min():.6f} | "
                  f"{same:.1%} |", flush=True)


if __name__ == "__main__":
    main()
