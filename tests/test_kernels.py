"""Every kernel against a float64 numpy reference, on every ISA path this CPU can run.

The kernels are called through bertcpu._core.kernels, which drives them exactly as the encoder
does (same packing, same GEMM driver and blocking, same attention code).
"""
import numpy as np
import pytest

import bertcpu
from bertcpu import _core

from conftest import reference_activation

ISAS = bertcpu.cpu_info()["available_isas"]
K = _core.kernels


@pytest.fixture(params=ISAS)
def isa(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Shapes around the micro-tile sizes (generic 4x8, AVX2 6x16, AVX-512 12x32), the K chunk (256)
# and BERT-base's layers.
GEMM_SHAPES = [(1, 1, 1), (1, 7, 5), (5, 17, 33), (6, 16, 16), (7, 255, 17), (13, 257, 31),
               (12, 512, 64), (29, 300, 97), (64, 96, 288), (130, 768, 200), (16, 768, 2304),
               (128, 3072, 768)]


ACTIVATIONS = ["none", "gelu", "gelu_rational", "gelu_tanh", "relu", "tanh"]


@pytest.mark.parametrize("shape", GEMM_SHAPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_matches_numpy(isa, rng, shape, activation):
    m, k, n = shape
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    pre = x.astype(np.float64) @ w.T.astype(np.float64) + b
    out = K.linear(x, w, b, activation, isa)
    assert out.shape == (m, n) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_activation(pre, activation), rtol=0, atol=2e-5)


def test_linear_without_bias_and_inputs_untouched(isa, rng):
    x = rng.standard_normal((9, 40)).astype(np.float32)
    w = rng.standard_normal((23, 40)).astype(np.float32)
    x0, w0 = x.copy(), w.copy()
    out = K.linear(x, w, None, "none", isa)
    np.testing.assert_allclose(out, x.astype(np.float64) @ w.T, rtol=0, atol=1e-4)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_linear_of_no_rows(isa):
    # An empty product, not a division by zero in the task split.
    out = K.linear(np.zeros((0, 3), np.float32), np.ones((4, 3), np.float32), None, "none", isa)
    assert out.shape == (0, 4)


@pytest.mark.parametrize("shape", [(300, 768, 2304), (16, 3072, 768), (128, 64, 1000)])
def test_linear_identical_for_every_thread_count(isa, rng, shape):
    # Each thread count splits the product into different tasks (row blocks, runs of panels that
    # shrink toward the end); every output element must still see the same arithmetic.
    m, k, n = shape
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    before = bertcpu.get_num_threads()
    try:
        outs = []
        for threads in [1, 2, 3, 5]:
            bertcpu.set_num_threads(threads)
            outs.append(K.linear(x, w, b, "gelu", isa))
    finally:
        bertcpu.set_num_threads(before)
    pre = x.astype(np.float64) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(outs[0], reference_activation(pre, "gelu"), rtol=0, atol=2e-5)
    for out in outs[1:]:
        assert np.array_equal(out, outs[0])


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 33, 1000])
def test_activation_matches_numpy(isa, rng, activation, n):
    x = (rng.standard_normal(n) * 6).astype(np.float32)
    x[: min(n, 4)] = [0.0, -0.0, 12.5, -30.0][: min(n, 4)]
    out = K.activation(x, activation, isa)
    np.testing.assert_allclose(out, reference_activation(x, activation), rtol=1e-6, atol=1e-6)


def test_activation_extremes(isa):
    x = np.array([-1e4, -100, -20, -5, 5, 20, 100, 1e4], np.float32)
    for gelu in ("gelu", "gelu_rational"):
        np.testing.assert_allclose(K.activation(x, gelu, isa), reference_activation(x, gelu),
                                   atol=1e-6)
    # Far below zero GELU is 0, not x times erf's last ulp short of -1.
    assert np.all(K.activation(x[:3], "gelu_rational", isa) == 0)
    np.testing.assert_allclose(K.activation(x, "tanh", isa), np.tanh(x), atol=1e-7)
    assert np.all(np.isfinite(K.activation(x, "gelu_tanh", isa)))


@pytest.mark.parametrize("n", [1, 5, 8, 16, 31, 96, 384, 768, 1000])
@pytest.mark.parametrize("addends", [0, 1, 2])
def test_add_layernorm_matches_numpy(isa, rng, n, addends):
    x = (rng.standard_normal((6, n)) * 3 + 1).astype(np.float32)
    a1 = rng.standard_normal((6, n)).astype(np.float32) if addends >= 1 else None
    a2 = rng.standard_normal((6, n)).astype(np.float32) if addends >= 2 else None
    g = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    v = x.astype(np.float64) + (0 if a1 is None else a1) + (0 if a2 is None else a2)
    ref = (v - v.mean(1, keepdims=True)) / np.sqrt(v.var(1, keepdims=True) + 1e-12) * g + b
    out = K.add_layernorm(x, a1, a2, g, b, 1e-12, isa)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("n", [1, 3, 8, 17, 128, 513])
@pytest.mark.parametrize("scale", [1.0, 0.125])
def test_softmax_matches_numpy(isa, rng, n, scale):
    x = (rng.standard_normal((4, n)) * 10).astype(np.float32)
    x[0, 0] = -3e38  # a masked-like entry must not produce NaN
    s = x.astype(np.float64) * scale
    e = np.exp(s - s.max(1, keepdims=True))
    out = K.softmax(x, scale, isa)
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)


def reference_attention(qkv, lengths, heads):
    hidden = qkv.shape[1] // 3
    d = hidden // heads
    out = np.zeros((qkv.shape[0], hidden))
    start = 0
    for length in lengths:
        rows = qkv[start:start + length].astype(np.float64)
        for h in range(heads):
            q = rows[:, h * d:(h + 1) * d]
            k = rows[:, hidden + h * d:hidden + (h + 1) * d]
            v = rows[:, 2 * hidden + h * d:2 * hidden + (h + 1) * d]
            s = q @ k.T / np.sqrt(d)
            p = np.exp(s - s.max(1, keepdims=True))
            out[start:start + length, h * d:(h + 1) * d] = (p / p.sum(1, keepdims=True)) @ v
        start += length
    return out


@pytest.mark.parametrize("hidden,heads,lengths", [
    (96, 3, [5, 17, 1, 70]),
    (64, 1, [1]),
    (768, 12, [128, 3]),
    (40, 5, [65, 64, 63]),
    (384, 12, [300]),
    (60, 3, [33, 7]),  # 20 dims per head: a full and a partial block of the key transpose
])
def test_attention_matches_numpy(isa, rng, hidden, heads, lengths):
    qkv = rng.standard_normal((sum(lengths), 3 * hidden)).astype(np.float32)
    out = K.attention(qkv, lengths, heads, isa)
    np.testing.assert_allclose(out, reference_attention(qkv, lengths, heads), rtol=0, atol=2e-5)


def test_kernel_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        K.activation(x, "swish")
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        K.linear(x, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        K.linear(x, np.zeros((4, 3), np.float32), isa="sse9")
    with pytest.raises(ValueError, match="lengths must sum"):
        K.attention(np.zeros((4, 6), np.float32), [3], 1)


def test_unsupported_isa_is_refused():
    missing = [i for i in ("generic", "avx2", "avx512") if i not in ISAS]
    if not missing:
        pytest.skip("this CPU runs every path")
    with pytest.raises(ValueError, match="cannot run"):
        K.linear(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), isa=missing[0])
