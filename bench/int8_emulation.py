"""int8 schemes for all-MiniLM-L6-v2 tried in numpy before any C++ (issue 14): the model in fp32
with its real weights, every dense layer replaceable by an exact emulation of bertcpu's int8
arithmetic (gemm_lowp.h: symmetric int8 weights per output channel; per-token asymmetric 0..255
activations with a zero point over [min(x, 0), max(x, 0)]; int32 sums; PackedLinearInt8's input
smoothing) or a variant of it. Scores sentence vectors as bench/accuracy_lowp.py does (mean
pooling, L2-normalized, against fp32: mean / min cosine, same nearest neighbour), on the same
sentences. The scheme "current" reproduces bertcpu-int8 (avx512 path: Q/K/V in bf16) to about
1e-6 of cosine.

    python bench/int8_emulation.py --sentences 1000
    python bench/int8_emulation.py --schemes current,all-int8,weights-only
"""
import argparse

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


def row_parameters(x):
    """Per row: inv, scale, zero point of Int8Kernels::quantize_row."""
    lo = np.minimum(x.min(1), 0).astype(F)
    hi = np.maximum(x.max(1), 0).astype(F)
    span = (hi - lo).astype(F)
    inv = np.where(span > 0, F(255) / np.where(span > 0, span, F(1)), F(0)).astype(F)
    return inv, (span / F(255)).astype(F), np.clip(np.rint(-lo * inv), 0, 255)


def quantize_rows(x):
    inv, scale, zp = row_parameters(x)
    q = np.clip(np.rint(x * inv[:, None]) + zp[:, None], 0, 255)
    return q, zp, scale


def int8_product(q, zp, scale_a, qw, scale_w, b):
    """The micro-kernels' epilogue: float(acc - zp * colsum) * scale_a * scale_w + bias."""
    centered = (q @ qw.T - zp[:, None] * qw.sum(1)[None, :]).astype(F)
    return (centered * scale_a[:, None] * scale_w[None, :] + b).astype(F)


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


def int8(x, w, b, ln, smooth=False):
    if smooth:
        t = smoothing(w, np.abs(ln[0]) + np.abs(ln[1]))
        x, w = (x * t).astype(F), (w / t).astype(F)
    return int8_product(*quantize_rows(x), *quantize_weight(w), b)


def int8_smoothed(x, w, b, ln):
    return int8(x, w, b, ln, smooth=True)


def weights_only(x, w, b, ln):
    qw, sw = quantize_weight(w)
    return (x.astype(np.float64) @ (qw * sw[:, None]).T).astype(F) + b


def activations_only(x, w, b, ln):
    q, zp, scale = quantize_rows(x)
    return (((q - zp[:, None]) * scale[:, None]) @ w.astype(np.float64).T).astype(F) + b


def top1_apart_rows(x, w, ln, smooth):
    """The activation side of the top1-apart schemes: x and w (smoothed if asked), the row indices,
    each row's largest-|x| column, the rest of the row quantized (q, zp, scale), and that largest
    value as rint(x * inv), an integer in units of the row scale."""
    if smooth:
        t = smoothing(w, np.abs(ln[0]) + np.abs(ln[1]))
        x, w = (x * t).astype(F), (w / t).astype(F)
    rows = np.arange(len(x))
    top = np.abs(x).argmax(1)
    rest = x.copy()
    rest[rows, top] = 0
    inv, _, _ = row_parameters(rest)
    return x, w, rows, top, quantize_rows(rest), np.rint(x[rows, top] * inv)


def int8_top1_apart(x, w, b, ln, smooth=False):
    """Each row's largest |x| leaves the row before it is quantized (the range is the rest's), and
    comes back as rint(x * inv), an integer in units of the row scale without the 0..255 limit,
    times its int8 weight column: exact integers, only a row-dependent rank-1 term more."""
    x, w, rows, top, (q, zp, scale), extra = top1_apart_rows(x, w, ln, smooth)
    qw, sw = quantize_weight(w)
    return int8_product(q, zp, scale, qw, sw, b) + (
        (extra * scale).astype(F)[:, None] * sw[None, :] * qw[:, top].T.astype(F)).astype(F)


def int8_top1_apart_smoothed(x, w, b, ln):
    return int8_top1_apart(x, w, b, ln, smooth=True)


def grouped_weight(w, group):
    """Symmetric int8 with one scale per output channel and `group` consecutive inputs, as fp32
    values (a kernel would scale each group's int32 sum; the same products up to fp32 rounding)."""
    n, k = w.shape
    blocks = w.reshape(n, k // group, group)
    amax = np.abs(blocks).max(2, keepdims=True).astype(F)
    q = np.rint(blocks * np.where(amax > 0, F(127) / np.where(amax > 0, amax, F(1)), F(0)))
    return (q * (amax / F(127))).reshape(n, k)


def top1_apart_group128(x, w, b, ln, smooth=False):
    """int8_top1_apart's activations times grouped_weight(w, 128): dequantized products in
    float64."""
    x, w, rows, top, (q, zp, scale), extra = top1_apart_rows(x, w, ln, smooth)
    values = (q - zp[:, None]) * scale[:, None]
    values[rows, top] = extra * scale
    return (values @ grouped_weight(w, 128).T).astype(F) + b


def top1_apart_group128_smoothed(x, w, b, ln):
    return top1_apart_group128(x, w, b, ln, smooth=True)


def per_kind(default, **by_kind):
    return lambda kind: by_kind.get(kind, default)


SCHEMES = {
    "current": per_kind(int8, qkv=bfloat16, ffn_in=int8_smoothed),
    "current-avx2": per_kind(int8, qkv=fp32, ffn_in=int8_smoothed),
    "all-int8": per_kind(int8),
    "all-int8-smoothed": per_kind(int8, qkv=int8_smoothed, ffn_in=int8_smoothed),
    "qkv-int8": per_kind(int8, ffn_in=int8_smoothed),
    "weights-only": per_kind(weights_only),
    "activations-only": per_kind(activations_only),
    "top1-apart": per_kind(int8_top1_apart, ffn_in=int8_top1_apart_smoothed),
    "top1-apart-group128": per_kind(top1_apart_group128, ffn_in=top1_apart_group128_smoothed),
    "bf16": per_kind(bfloat16),
}
# One kind at a time in int8 (the others fp32): where the error comes from.
for _kind in KINDS:
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
        """sequences: token id arrays; dense(kind) -> layer variant."""
        w, H = self.w, self.hidden
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
                q, k, v = (qkv[a:e, i * H:(i + 1) * H].reshape(e - a, self.heads, d)
                           .transpose(1, 0, 2) for i in range(3))
                s = (q @ k.transpose(0, 2, 1)) / F(np.sqrt(d))
                s = np.exp(s - s.max(-1, keepdims=True))
                ctx[a:e] = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(-1, H)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    args = parser.parse_args(argv)
    folder = benchmark.minilm_folder()
    tokenizer = Tokenizer.from_pretrained(folder)
    sequences = []
    for sentence in benchmark.docstring_sentences(args.sentences):
        enc = tokenizer([sentence], truncation=True, max_length=256, return_tensors="np")
        sequences.append(enc["input_ids"][0])
    model = MiniLM(folder)
    expected = model.sentence_vectors(sequences, lambda kind: fp32)
    expected_neighbours = benchmark.nearest_neighbours(expected)
    print(f"all-MiniLM-L6-v2, {len(sequences)} sentences, reference: this model in fp32")
    print()
    print("| scheme | mean cosine | min cosine | same nearest neighbour |")
    print("|---|---:|---:|---:|")
    for name in args.schemes.split(","):
        vectors = model.sentence_vectors(sequences, SCHEMES[name])
        cosines = (vectors * expected).sum(axis=1)
        same = np.mean(benchmark.nearest_neighbours(vectors) == expected_neighbours)
        print(f"| {name} | {cosines.mean():.6f} | {cosines.min():.6f} | {same:.1%} |", flush=True)


if __name__ == "__main__":
    main()
