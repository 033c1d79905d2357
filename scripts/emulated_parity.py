"""Model parity across machines: reference outputs made where transformers runs, checked where only
bertcpu runs or where the CPU is made to look like another: under QEMU on every aarch64 path
(scripts/test_aarch64.sh), under QEMU's x86 CPU models and with CPU features hidden
(scripts/test_x86_models.sh).

    python scripts/emulated_parity.py make DIR    # small random BERTs + transformers' outputs
    python scripts/emulated_parity.py check DIR   # bertcpu on every path this CPU has, each dtype

`make` writes DIR/<model>/ (a transformers folder) and DIR/<model>.npz (the inputs and
transformers' last_hidden_state and pooler_output, float32). `check` loads each folder with
bertcpu on every kernel path of cpu_info()["available_isas"] (BERTCPU_ISA caps them) and in every
dtype that path runs, and compares with the bars of the x86 tests: float32 within 1e-4 (max abs,
real positions and pooler; tests/conftest.py TOLERANCE); bfloat16 and int8 by the cosine of each
real token's vector (tests/test_lowp_model.py's bars for bfloat16; int8 0.999, the sentence bar,
since these models are small) and by their max abs difference from transformers, which may exceed
the native engine's own (recorded by `make` on the same kernel table, or on its best path for the
tables it lacks) by at most half of it plus 1e-4: the cosine alone hardly moves on models this
small. Exits 1 on any miss.
"""
import pathlib
import sys

import numpy as np

# Odd sizes (no multiple of any SIMD width or micro-tile) and a MiniLM-like shape with another
# activation; both small enough for QEMU.
MODELS = {
    "odd": dict(hidden_size=96, num_attention_heads=3, intermediate_size=200, num_hidden_layers=2,
                vocab_size=1000, max_position_embeddings=128, type_vocab_size=3),
    "minilm_like": dict(hidden_size=128, num_attention_heads=4, intermediate_size=512,
                        num_hidden_layers=2, vocab_size=2000, max_position_embeddings=64,
                        hidden_act="gelu_new"),
}
FP32_TOLERANCE = 1e-4
TOKEN_COSINE = {"bfloat16": 0.9999, "int8": 0.999}
# int8 kernel tables whose arithmetic is another's to the bit, for the yardstick where `make` ran
# on a CPU that picks the other: avx512bw (AVX-512 without VNNI) sums avx2's 7-bit activations
# exactly as avx2 does.
SAME_INT8_ARITHMETIC = {"avx512bw": "avx2"}


def make(out):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
    import torch
    from conftest import save_random_bert

    import bertcpu
    from transformers import BertModel

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for name, config in MODELS.items():
        folder = save_random_bert(out / name, seed=3, **config)
        batch, seq = 3, 21
        ids = rng.integers(5, config["vocab_size"], (batch, seq))
        types = rng.integers(0, config.get("type_vocab_size", 2), (batch, seq))
        lengths = np.array([seq, 13, 4])
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        model = BertModel.from_pretrained(folder).eval()
        with torch.no_grad():
            ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                        token_type_ids=torch.tensor(types))
        reference = dict(input_ids=ids, attention_mask=mask, token_type_ids=types,
                         last_hidden_state=ref.last_hidden_state.numpy(),
                         pooler_output=ref.pooler_output.numpy())
        # The native engine's own low-precision error as a yardstick: on its best path, and on
        # each kernel table its paths reach (the avx2 int8 table's 7-bit activations err more).
        for dtype in TOKEN_COSINE:
            for isa in [None] + bertcpu.cpu_info()["available_isas"]:
                if isa and bertcpu._core.best_dense_isa(dtype, isa) == "generic":
                    continue  # runs float32 there
                ours = bertcpu.BertModel.from_pretrained(folder, dtype=dtype, isa=isa)
                reference[yardstick_key(dtype, isa and ours.kernels)] = max_real_diff(
                    ours(ids, attention_mask=mask, token_type_ids=types).last_hidden_state,
                    reference["last_hidden_state"], mask)
        np.savez(out / f"{name}.npz", **reference)
        print(f"made {name}: {folder}")


def yardstick_key(dtype, kernels=None):
    """The npz key of the native engine's error in `dtype` on the kernel table `kernels` (a
    model's .kernels; None: on its best path)."""
    return f"native_max_diff_{dtype}" + (f"_{kernels}" if kernels else "")


def yardstick_table(info, dtype, kernels):
    """The kernel table whose native error measures a `dtype` model on path `kernels`: on the best
    int8 path, the table cpu_info() names there (a path can hold several)."""
    if dtype != "int8":
        return kernels
    table = info["int8_kernels"] if kernels == info["int8_isa"] else kernels
    return SAME_INT8_ARITHMETIC.get(table, table)


def max_real_diff(ours, ref, mask):
    real = mask.astype(bool)
    return float(np.abs(ours[real] - ref[real]).max())


def token_cosines(ours, ref, mask):
    real = mask.astype(bool)
    a, b = ours[real].astype(np.float64), ref[real].astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check(folder):
    import bertcpu

    info = bertcpu.cpu_info()
    print(f"cpu_info: vendor={info['vendor']!r} features={info['features']} "
          f"available_isas={info['available_isas']} isa={info['isa']} "
          f"bfloat16_isas={info['bfloat16_isas']} int8_isas={info['int8_isas']}")
    cap = info["available_isas"].index(info["isa"])
    failures = 0
    for name in MODELS:
        data = np.load(folder / f"{name}.npz")
        mask = data["attention_mask"]
        for isa in info["available_isas"][: cap + 1]:
            for dtype in ("float32", "bfloat16", "int8"):
                if dtype != "float32" and bertcpu._core.best_dense_isa(dtype, isa) == "generic":
                    continue  # no instructions for it on this path: such a model runs float32
                model = bertcpu.BertModel.from_pretrained(folder / name, isa=isa, dtype=dtype)
                out = model(data["input_ids"], attention_mask=mask,
                            token_type_ids=data["token_type_ids"])
                diff = max_real_diff(out.last_hidden_state, data["last_hidden_state"], mask)
                if dtype == "float32":
                    diff = max(diff, np.abs(out.pooler_output - data["pooler_output"]).max())
                    ok = diff <= FP32_TOLERANCE
                    figure = f"max abs diff {diff:.2e} (bar {FP32_TOLERANCE:g})"
                else:
                    cosine = token_cosines(out.last_hidden_state, data["last_hidden_state"],
                                           mask).min()
                    key = yardstick_key(dtype, yardstick_table(info, dtype, model.kernels))
                    native = float(data[key if key in data else yardstick_key(dtype)])
                    bar = 1.5 * native + 1e-4
                    ok = cosine >= TOKEN_COSINE[dtype] and diff <= bar
                    figure = (f"min token cosine {cosine:.6f} (bar {TOKEN_COSINE[dtype]}), max abs "
                              f"diff {diff:.2e} (native {native:.2e}, bar {bar:.2e})")
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {name:12s} isa={isa:8s} {dtype:9s} "
                      f"kernels={model.kernels:8s} {figure}")
    if failures:
        sys.exit(f"{failures} parity check(s) failed")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    (make if sys.argv[1] == "make" else check)(pathlib.Path(sys.argv[2]))
