"""The bf16 and int8 GEMMs against numpy, on every low-precision path this CPU can run.

Two references each: (a) numpy doing the kernels' own arithmetic -- bf16-rounded inputs summed in
float32 in the kernels' order, or exact integer products scaled in float32 in the kernels' order --
which the kernels must match bit for bit before the activation; (b) the float64 product of the
unrounded inputs, within a bound derived from the rounding / quantization steps.

int8 quantizes weights symmetrically per output channel (int8) and activations asymmetrically per
row (0..255 with a zero point; 0..127 on avx2 and avx512bw, K.int8_activation_max). The paths are
kernel tables: generic, avx2, avx512bw (avx2's instructions on zmm, for AVX-512 without VNNI),
avxvnni (AVX-VNNI, VEX), avx512vnni_ymm (the avxvnni source with the EVEX
instruction: how that kernel is tested on AVX-512 CPUs), avx512, amx (AMX tiles) and amx_model
(the AMX kernels over a scalar model of the tile instructions: how their packing and loops are
tested on every CPU).
"""
import platform

import numpy as np
import pytest
from scipy.special import erf

import bertcpu
from bertcpu import _core

from conftest import reference_activation
from test_kernels import reference_attention

K = _core.kernels
LOWP = K.lowp_isas()
CHUNK = 256  # kGemmKc: bf16 sums restart per K chunk, then add into C


def to_bf16(a):
    """float32 -> bf16 values (as float32) the way vcvtneps2bf16 rounds: to nearest even, NaN
    quiet, denormals to signed zero."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    rounded = np.where((u & 0x7F800000) == 0, (u >> 16) & 0x8000, rounded)
    return (rounded.astype(np.uint32) << 16).view(np.float32)


def bf16_same_math(x, w, b, tiles=False):
    """The bf16 kernels' sum before the activation: per K chunk, per pair, the odd product added
    first (vdpbf16ps), in float32; chunks added into C, then the bias. tiles: per 32 K values
    (one tdpbf16ps) the even and the odd products in two sums from zero, then their sum added."""
    xb, wb = to_bf16(x), to_bf16(w)
    group = 32 if tiles else 2
    pad = -x.shape[1] % group
    xb = np.pad(xb, ((0, 0), (0, pad)))
    wb = np.pad(wb, ((0, 0), (0, pad)))
    kp = xb.shape[1]

    def product(k):  # exact in float32
        return xb[:, k, None] * wb[None, :, k]

    c = None
    for k0 in range(0, kp, CHUNK):
        acc = np.zeros((x.shape[0], w.shape[0]), np.float32)
        for k in range(k0, min(k0 + CHUNK, kp), group):
            if tiles:
                even = np.zeros_like(acc)
                odd = np.zeros_like(acc)
                for j in range(k, k + group, 2):
                    even = even + product(j)
                    odd = odd + product(j + 1)
                acc = acc + (even + odd)
            else:
                acc = acc + product(k + 1)
                acc = acc + product(k)
        c = acc if c is None else c + acc
    return c if b is None else c + b


# The tile model sums in tdpbf16ps's order as Intel documents it (lowp_amx_model.cpp): bit for bit
# that order.
TILE_ORDER_BF16 = {"amx_model"}
# Paths whose bf16 instruction sums in its own rounding: aarch64 BFMMLA, four products at a time
# (round-to-odd without FEAT_EBF16), and the real tdpbf16ps, whose summation this project has
# not yet checked on hardware against Intel's description. Their sums are held to the pair-order
# result within float32 summation error instead of bit for bit.
OWN_ROUNDING_BF16 = {"i8mm", "amx"}


def assert_bf16_same_math(isa, out, x, w, b):
    expected = bf16_same_math(x, w, b, tiles=isa in TILE_ORDER_BF16)
    if isa not in OWN_ROUNDING_BF16:
        np.testing.assert_array_equal(out, expected)
        return
    # Each of the two sums rounds at most k + 2 times (1 ulp each for round-to-odd), relative to
    # the sum of |products| (and |bias| once added).
    magnitude = np.abs(to_bf16(x)).astype(np.float64) @ np.abs(to_bf16(w)).astype(np.float64).T
    magnitude += 0 if b is None else np.abs(b)
    bound = magnitude * (2 * x.shape[1] + 8) * 2.0**-23 + 1e-37
    assert np.all(np.abs(out.astype(np.float64) - expected) <= bound)


def quantize_weights(w):
    """Per-row (output channel) symmetric int8: (q, scale) with scale = max|w| / 127,
    q = rint(w * (127 / max|w|)) in float32, as the packers compute them."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w).max(axis=1)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.rint(w * inv[:, None]).astype(np.int8)
    return q, (amax / np.float32(127)).astype(np.float32)


def quantize_activations(x, clamp=True, q_max=255):
    """Per-row asymmetric 0..q_max, as every path of that int8_activation_max computes it in
    float32: lo = min(min x, 0), hi = max(max x, 0); inv = q_max / (hi - lo), scale = (hi - lo) /
    q_max, zp = clamp(rint(-lo * inv)), q = clamp(rint(x * inv) + zp) to [0, q_max]; a zero row has
    scale 0, zp 0, q 0. Returns (q int64, scale float32, zp int64); clamp=False leaves q
    unclamped."""
    levels = np.float32(q_max)
    x = np.asarray(x, np.float32)
    lo = np.minimum(x.min(axis=1), np.float32(0))
    hi = np.maximum(x.max(axis=1), np.float32(0))
    span = hi - lo
    nonzero = hi > lo
    inv = np.divide(levels, span, out=np.zeros_like(span), where=nonzero)
    scale = np.divide(span, levels, out=np.zeros_like(span), where=nonzero)
    zp = np.clip(np.rint(-lo * inv), 0, q_max).astype(np.int64)
    q = np.rint(x * inv[:, None]).astype(np.int64) + zp[:, None]
    return (np.clip(q, 0, q_max) if clamp else q), scale, zp


def top1_apart(x):
    """Each row split as the int8 paths split it before quantizing: (the row without its largest
    |x|, that value's column -- the first, in a tie --, that value)."""
    x = np.asarray(x, np.float32)
    rows = np.arange(len(x))
    top = np.abs(x).argmax(axis=1)
    value = x[rows, top]
    rest = x.copy()
    rest[rows, top] = 0
    return rest, top, value


def activation_max(isa):
    """The largest activation code of int8 path isa."""
    return K.int8_activation_max(isa)


def int8_same_math(x, w, b, q_max=255):
    """The int8 kernels' result before the activation: each row's largest |x| kept apart
    (top1_apart), the rest quantized to 0..q_max, exact integer sums, then
    (float32(acc - zp_x * colsum_w) * scale_x + top_value * q_w[top]) * scale_w + bias, left to
    right in float32."""
    rest, top, value = top1_apart(x)
    qx, sx, zx = quantize_activations(rest, q_max=q_max)
    qw, sw = quantize_weights(w)
    qw = qw.astype(np.int64)
    centered = qx @ qw.T - zx[:, None] * qw.sum(axis=1)[None, :]
    assert np.abs(centered).max(initial=0) < 2**31
    c = centered.astype(np.float32) * sx[:, None]
    c = (c + value[:, None] * qw[:, top].T.astype(np.float32)) * sw[None, :]
    return c if b is None else c + b


def exact(x, w, b):
    out = x.astype(np.float64) @ w.astype(np.float64).T
    return out if b is None else out + b


def bf16_bound(x, w):
    """|bf16 GEMM - exact|: rounding to bf16 (8 significant bits) moves each input by at most
    2^-8 of itself, so each product by 2^-7 + 2^-16 of |x w|; plus the float32 sums."""
    k = x.shape[1]
    return (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T) * (
        2.0**-7 + 2.0**-16 + (k + 2) * 2.0**-23) + 1e-6


def int8_bound(x, w, q_max=255):
    """|int8 GEMM - exact|: x = sx (q - zp) + e with |e| <= sx / 2 (the clamp to q_max only takes
    rint(x * inv) down to within 1/2 of x * inv), likewise w = sw q + e' with |e'| <= sw / 2, so the
    error is at most sx/2 sum|w| + sw/2 sum(|x| + sx/2), plus float32 rounding (also of scale and
    inv, which are not exact reciprocals). sx is the scale of the row without its largest |x|, which
    is kept apart exact (top1_apart)."""
    _, sx, _ = quantize_activations(top1_apart(x)[0], q_max=q_max)
    _, sw = quantize_weights(w)
    ax, aw = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)
    k = x.shape[1]
    bound = (sx[:, None] / 2 * aw.sum(1)[None, :]
             + sw[None, :] / 2 * (ax.sum(1)[:, None] + k * sx[:, None] / 2))
    return bound * 1.001 + (ax @ aw.T) * 2.0**-20 + 1e-6


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


def inputs(rng, m, k, n):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    return x, w, b


# M from 1 to 37 (AVX-512 bf16 tiles are 12 rows, VNNI 8, AVX2 6, generic 4), K odd and across the
# 256-row chunks and the 2- / 4-wide K groups, N odd and around the panels (8, 16, 32, 48).
SHAPES = [(1, 1, 1), (1, 7, 5), (2, 2, 3), (3, 5, 16), (5, 17, 33), (8, 3, 49), (9, 4, 48),
          (12, 255, 31), (13, 257, 97), (25, 130, 47), (37, 301, 65), (29, 513, 50)]
# Enough rows for several row blocks (128) and so several threads.
BIG = (300, 96, 200)


@pytest.mark.parametrize("isa", LOWP["bf16"])
@pytest.mark.parametrize("shape", SHAPES + [BIG])
def test_bf16_matches_numpy(isa, rng, shape):
    x, w, b = inputs(rng, *shape)
    out = K.linear_bf16(x, w, b, "none", isa)
    assert out.shape == (shape[0], shape[2]) and out.dtype == np.float32
    assert_bf16_same_math(isa, out, x, w, b)
    assert np.all(np.abs(out - exact(x, w, b)) <= bf16_bound(x, w))


@pytest.mark.parametrize("isa", LOWP["int8"])
@pytest.mark.parametrize("shape", SHAPES + [BIG])
def test_int8_matches_numpy(isa, rng, shape):
    x, w, b = inputs(rng, *shape)
    out = K.linear_int8(x, w, b, "none", isa)
    assert out.shape == (shape[0], shape[2]) and out.dtype == np.float32
    np.testing.assert_array_equal(out, int8_same_math(x, w, b, activation_max(isa)))
    assert np.all(np.abs(out - exact(x, w, b)) <= int8_bound(x, w, activation_max(isa)))


@pytest.mark.parametrize("isa", LOWP["int8"])
def test_int8_largest_products_are_exact(isa):
    """Every product at its largest magnitude, all of one sign within a row: q = q_max and q = 0
    against weights of +-127 (for q_max 255 the operands an int16 pair sum of vpmaddubsw could
    not hold, 2 * 255 * 127; for avx2's 127, its largest pairs): every path sums them exactly."""
    k, n = 67, 20
    x = np.full((3, k), 2.0, np.float32)  # zp 0, q q_max everywhere
    x[1] = -2.0  # zp q_max, q 0 everywhere
    x[2, ::2] = -2.0  # q alternating 0 and q_max
    w = np.where(np.arange(n)[:, None] % 2, 1.0, -1.0) * np.ones((n, k), np.float32)
    w[3, ::3] *= -1  # mixed signs in one channel
    out = K.linear_int8(x, w.astype(np.float32), None, "none", isa)
    np.testing.assert_array_equal(out, int8_same_math(x, w, None, activation_max(isa)))
    np.testing.assert_allclose(out[:2], exact(x[:2], w, None), rtol=1e-5)  # q - zp is exact


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("activation", ["gelu", "gelu_rational", "gelu_tanh", "relu", "tanh"])
@pytest.mark.parametrize("shape", [(13, 257, 97), (37, 64, 200)])
def test_epilogue_activation(precision, rng, activation, shape):
    x, w, b = inputs(rng, *shape)
    for isa in LOWP[precision]:
        pre = (bf16_same_math(x, w, b) if precision == "bf16"
               else int8_same_math(x, w, b, activation_max(isa))).astype(np.float64)
        out = K.PackedWeight(w, b, precision, isa).run(x, activation)
        np.testing.assert_allclose(out, reference_activation(pre, activation), rtol=0,
                                   atol=1e-5 + 1e-6 * np.abs(pre).max())


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_without_bias_inputs_untouched_and_repeatable(precision, rng):
    x, w, _ = inputs(rng, 21, 77, 45)
    x0, w0 = x.copy(), w.copy()
    for isa in LOWP[precision]:
        packed = K.PackedWeight(w, None, precision, isa)
        assert packed.isa == isa and packed.precision == precision
        if precision == "bf16":
            assert_bf16_same_math(isa, packed.run(x), x, w, None)
        else:
            np.testing.assert_array_equal(packed.run(x),
                                          int8_same_math(x, w, None, activation_max(isa)))
        np.testing.assert_array_equal(packed.run(x, "none", 3), packed.run(x))
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_thread_count_does_not_change_results(precision, rng):
    x, w, b = inputs(rng, *BIG)
    threads = _core.get_num_threads()
    try:
        for isa in LOWP[precision]:
            packed = K.PackedWeight(w, b, precision, isa)
            _core.set_num_threads(1)
            one = packed.run(x)
            _core.set_num_threads(2)
            np.testing.assert_array_equal(packed.run(x), one)
    finally:
        _core.set_num_threads(threads)


@pytest.mark.parametrize("isa", LOWP["bf16"])
def test_bf16_rounding_of_weights_and_activations(isa):
    tiny = np.float32(1e-40)  # denormal: becomes zero
    ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x3F80C000, 0x3F807FFF],
                    np.uint32).view(np.float32)
    values = np.concatenate([ties, [tiny, -tiny, 0.0, -0.0, 1.0, 3.0e38, -2.5e-38, 1 / 3]])
    values = values.astype(np.float32)
    # Weights: rounded by the packer (NaN and infinity included).
    w = np.concatenate([values, [np.inf, -np.inf, np.nan]]).astype(np.float32)[None, :]
    got = K.PackedWeight(w, None, "bf16", isa).weight()
    assert np.array_equal(got.view(np.uint32), to_bf16(w).view(np.uint32))
    # Activations: rounded by the path's conversion; x @ I returns them.
    x = np.stack([values, values[::-1]])
    out = K.linear_bf16(x, np.eye(len(values), dtype=np.float32), None, "none", isa)
    np.testing.assert_array_equal(out, to_bf16(x))


@pytest.mark.parametrize("isa", LOWP["int8"])
def test_int8_weight_quantization(isa, rng):
    w = rng.standard_normal((50, 37)).astype(np.float32)
    w[3] = 0.0  # a zero channel: scale 0, output = bias
    w[7, 5] = 40.0  # an outlier channel
    packed = K.PackedWeight(w, None, "int8", isa)
    q, scales = packed.int8_weight()
    q_ref, s_ref = quantize_weights(w)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(scales, s_ref)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    np.testing.assert_array_equal(packed.weight(), q.astype(np.float32) * scales[:, None])


# Per q_max: a row of ties with inv = q_max / (hi - lo) a power of two, whose lo's zero point
# rounds up (to even) and whose hi's rint(hi * inv) + zp then reaches q_max + 1 before the clamp.
# (-lo * inv, hi * inv, inv, zp): 255 -> zp rint(153.5) = 154, rint(101.5) + 154 = 256; 127 -> zp
# rint(77.5) = 78, rint(49.5) + 78 = 128.
CLAMP_TIES = {255: (153.5, 101.5, 64, 154), 127: (77.5, 49.5, 32, 78)}


def extreme_rows(rng, k, q_max=255):
    """Rows that stress the activation quantization: zero, one-signed, a single nonzero, an
    outlier, tiny, and rows whose rint(x * inv) + zp reaches q_max + 1 before the clamp -- in the
    rest of the row, without its largest |x| (top1_apart)."""
    x = rng.standard_normal((16, k)).astype(np.float32)
    x[2] = 0.0  # zero row: scale 0, zp 0, output = bias
    x[5, 7 % k] = 1e4  # one outlier, kept apart
    x[8] = np.where(np.arange(k) % 2, 127.0, -127.0)  # ties for the top; q = 0, q_max for the rest
    x[9] = np.abs(x[9]) + 0.25  # all positive: zp 0
    x[10] = -np.abs(x[10]) - 0.25  # all negative: zp q_max
    x[11] = 0.0
    x[11, k // 2] = 3.0  # a single nonzero: the top, and a zero rest
    x[12] = 0.0
    x[12, 0] = -2.0  # the top, then a single negative nonzero: q = 0 there, zp q_max
    x[12, -1] = -1.0 if k > 1 else x[12, -1]
    # CLAMP_TIES; the top (10) leaves the range as it is.
    lo, hi, inv, _ = CLAMP_TIES[q_max]
    x[13] = np.resize(np.arange(-lo, hi + 0.5, dtype=np.float32) / inv, k)
    x[13, :3] = np.float32([-lo / inv, hi / inv, 10.0])[:k]
    x[14] = 0.5 * x[14] * (1 + erf(x[14] / np.sqrt(2)))  # GELU output: skewed, >= -0.17
    x[15] *= np.float32(1e-20)
    return x


@pytest.mark.parametrize("isa", LOWP["int8"])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 64, 100, 301])
def test_int8_activation_quantization(isa, rng, k):
    levels = activation_max(isa)
    x = np.concatenate([extreme_rows(rng, k, levels), 3 * inputs(rng, 5, k, 1)[0]])
    q, scale, zp, top, value = K.quantize_activations(x, isa)
    rest, top_ref, value_ref = top1_apart(x)
    np.testing.assert_array_equal(top, top_ref)
    np.testing.assert_array_equal(value, value_ref)
    assert top[5] == 7 % k and value[5] == 1e4 and top[8] == 0 and value[8] == -127
    assert top[11] == k // 2 and value[11] == 3 and scale[11] == 0 and not q[11].any()
    q_ref, scale_ref, zp_ref = quantize_activations(rest, q_max=levels)
    kp = q.shape[1]
    assert kp >= k and kp - k < 8 and q.shape[0] == len(x)  # K groups: up to 8 (aarch64 i8mm)
    np.testing.assert_array_equal(q[:, :k], q_ref)
    np.testing.assert_array_equal(q[:, k:], np.repeat(zp_ref[:, None], kp - k, axis=1))
    np.testing.assert_array_equal(scale, scale_ref)
    np.testing.assert_array_equal(zp, zp_ref)
    assert scale[2] == 0 and zp[2] == 0 and not q[2].any()
    assert zp[9] == 0
    if k > 1:
        assert zp[10] == levels and zp[12] == levels and q[12, k - 1] == 0
    if k > 3:
        assert q_ref[8].min() == 0 and q_ref[8].max() == levels
        unclamped = quantize_activations(rest[13:14], clamp=False, q_max=levels)[0]
        assert unclamped.max() == levels + 1  # the clamp matters
        tie_zp = CLAMP_TIES[levels][3]
        assert zp[13] == tie_zp and q[13, 1] == levels and q[13, 2] == tie_zp
    # (q - zp) * scale is within half a step of the rest, except for float32 rounding of scale and
    # inv.
    err = np.abs((q[:, :k] - zp[:, None]) * scale[:, None].astype(np.float64) - rest)
    assert np.all(err <= scale[:, None] * 0.5 * (1 + 1e-5) + np.abs(rest) * 2.0**-21)


@pytest.mark.parametrize("isa", LOWP["int8"])
def test_int8_zero_rows_and_extremes(isa, rng):
    x = extreme_rows(rng, 300, activation_max(isa))
    _, w, b = inputs(rng, 1, 300, 40)
    w[4] = 0.0
    out = K.linear_int8(x, w, b, "none", isa)
    np.testing.assert_array_equal(out, int8_same_math(x, w, b, activation_max(isa)))
    bound = int8_bound(x, w, activation_max(isa))
    assert np.all(np.abs(out - exact(x, w, b)) <= bound + np.abs(b))
    np.testing.assert_array_equal(out[2], b)
    np.testing.assert_array_equal(out[:, 4], np.full(len(x), b[4]))


@pytest.mark.parametrize("isa", LOWP["int8"])
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_int8_row_outlier_kept_apart(isa, rng, activation):
    """A row with one value 10^4 times the rest (a [CLS] row's outlier channel, exaggerated): the
    outlier is multiplied exactly, and the rest keep the resolution of their own range, so the
    result is as close to the exact product as without the outlier -- quantized with the outlier,
    the rest would be a few levels of 39 each."""
    x, w, b = inputs(rng, 9, 200, 70)
    spiked = x.copy()
    columns = [0, 7, 50, 111, 199, 3, 64, 128, 150]
    spiked[np.arange(9), columns] = np.float32(1e4) * np.where(np.arange(9) % 2, 1, -1)
    packed = K.PackedWeight(w, b, "int8", isa)
    plain_error = np.abs(packed.run(x) - exact(x, w, b)).max()
    error = np.abs(packed.run(spiked) - exact(spiked, w, b)) - (
        np.abs(spiked[np.arange(9), columns])[:, None] * quantize_weights(w)[1][None, :] / 2)
    assert error.max() <= 2 * plain_error
    pre = int8_same_math(spiked, w, b, activation_max(isa)).astype(np.float64)
    np.testing.assert_allclose(packed.run(spiked, activation),
                               reference_activation(pre, activation), rtol=1e-6, atol=1e-5)


def test_int8_asymmetric_resolution():
    """A one-signed row spends all levels (256; avx2 128) on its range: half the step of a
    symmetric quantization."""
    x = np.linspace(0, 2, 101, dtype=np.float32)[None, :]
    x[0, 0] = 3.0  # the top, kept apart
    for isa in LOWP["int8"]:
        levels = activation_max(isa)
        q, scale, zp, _, _ = K.quantize_activations(x, isa)
        assert zp[0] == 0 and q.max() == levels and scale[0] == np.float32(2) / np.float32(levels)
        q, scale, zp, _, _ = K.quantize_activations(-x, isa)
        assert zp[0] == levels and q[0, :101].min() == 0


def bf16_reference_attention(qkv, lengths, heads):
    """Attention with q, k, v rounded to bf16 and the softmax numerators rounded to bf16 before
    the product with v (the division by their sum after it), the rest in float64: what the bf16
    attention computes, up to fp32 summation and the rounding of numerators that sit at a bf16
    boundary."""
    hidden = qkv.shape[1] // 3
    d = hidden // heads
    rows_all = to_bf16(qkv).astype(np.float64)
    out = np.zeros((qkv.shape[0], hidden))
    start = 0
    for length in lengths:
        rows = rows_all[start:start + length]
        for h in range(heads):
            q, k, v = (rows[:, part * hidden + h * d:part * hidden + (h + 1) * d]
                       for part in range(3))
            s = q @ k.T / np.sqrt(d)
            p = np.exp(s - s.max(1, keepdims=True))
            rounded = to_bf16(p.astype(np.float32)).astype(np.float64)
            out[start:start + length, h * d:(h + 1) * d] = rounded @ v / p.sum(1, keepdims=True)
        start += length
    return out


# Head dims 32 / 64 / 8 / 20 (a partial pair group with AMX's 32-value K tiles), keys past a
# micro-tile and past one 256-key chunk of the values (600).
BF16_ATTENTION = [(96, 3, [5, 17, 1, 70]), (768, 12, [128, 3]), (40, 5, [65, 64, 63]),
                  (60, 3, [33, 7]), (64, 1, [600])]


@pytest.mark.parametrize("table", LOWP["bf16"])
@pytest.mark.parametrize("hidden,heads,lengths", BF16_ATTENTION)
def test_bf16_attention(table, rng, hidden, heads, lengths):
    """Q K^T and P V on a bf16 kernel table (bfloat16 and int8 models): against the same rounding
    in float64 (a packing or chunking slip would be off by O(1)), and within bf16's error of the
    exact attention."""
    isa = "generic" if table == "generic" else bertcpu.cpu_info()["isa"]
    qkv = rng.standard_normal((sum(lengths), 3 * hidden)).astype(np.float32)
    if table != "generic" and isa not in ("avx512", "amx"):
        # aarch64's BFMMLA quads, or 32-column tables beside the narrower generic / AVX2 / NEON
        # fp32 panels whose key packer the bf16 keys borrow: those models keep fp32 attention.
        with pytest.raises(ValueError, match="attention cannot run on the"):
            K.attention(qkv, lengths, heads, isa, table)
        return
    qkv0 = qkv.copy()
    out = K.attention(qkv, lengths, heads, isa, table)
    np.testing.assert_allclose(out, bf16_reference_attention(qkv, lengths, heads), rtol=0,
                               atol=2e-3)
    np.testing.assert_allclose(out, reference_attention(qkv, lengths, heads), rtol=0, atol=3e-2)
    np.testing.assert_array_equal(qkv, qkv0)


def test_empty_batch():
    w = np.ones((5, 3), np.float32)
    for precision in ("bf16", "int8"):
        assert K.PackedWeight(w, None, precision).run(np.zeros((0, 3), np.float32)).shape == (0, 5)


def test_fp32_packed_weight_is_the_fp32_gemm(rng):
    x, w, b = inputs(rng, 17, 100, 40)
    packed = K.PackedWeight(w, b, "fp32")
    np.testing.assert_array_equal(packed.run(x, "gelu"), K.linear(x, w, b, "gelu"))
    np.testing.assert_array_equal(packed.weight(), w)


def test_default_paths_are_the_best_available():
    order = ["generic", "avx2", "avx512", "amx", "neon", "dotprod", "i8mm"]
    info = _core.cpu_info()
    cap = order.index(info["isa"])  # the fp32 path (BERTCPU_ISA caps it)
    w = np.ones((2, 2), np.float32)
    expected = [i for i in info["bfloat16_isas"] if order.index(i) <= cap][-1]
    assert info["bfloat16_isa"] == info["bfloat16_kernels"] == expected
    assert K.PackedWeight(w, None, "bf16").isa == expected
    # int8: the best table beside the fp32 path; beside avx2, AVX-VNNI when the CPU has it, beside
    # avx512 the vpmaddubsw kernel when it has no AVX512_VNNI.
    best = info["int8_isa"]
    if best == "avx2" and "avx_vnni" in info["features"]:
        best = "avxvnni"
    if best == "avx512" and "avx512_vnni" not in info["features"]:
        best = "avx512bw"
    assert info["int8_kernels"] == best == K.PackedWeight(w, None, "int8").isa


def test_bad_inputs():
    x = np.zeros((2, 3), np.float32)
    w = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        K.PackedWeight(w, None, "fp16")
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        K.linear_bf16(x, w, isa="sse9")
    if "avx2" in _core.cpu_info()["available_isas"]:
        with pytest.raises(ValueError, match="no bf16 kernels for the avx2 path"):
            K.linear_bf16(x, w, isa="avx2")
    with pytest.raises(ValueError, match=r"\[M, K\]"):
        K.linear_int8(np.zeros((2, 5), np.float32), w)
    with pytest.raises(ValueError, match="bias must be"):
        K.linear_bf16(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        K.linear_int8(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="must not be empty"):
        K.linear_int8(x[:, :0], w[:, :0])
    with pytest.raises(ValueError, match="unknown activation"):
        K.linear_int8(x, w, activation="swish")
    with pytest.raises(ValueError, match="needs precision int8"):
        K.PackedWeight(w, None, "bf16").int8_weight()
    with pytest.raises(ValueError, match="repeats"):
        K.PackedWeight(w, None, "int8").run(x, "none", 0)
    with pytest.raises(ValueError, match="in_features above 65536"):
        K.PackedWeight(np.zeros((1, 65537), np.float32), None, "int8", "generic")


def test_unsupported_paths_are_refused():
    paths = {"bf16": ["avx512", "amx", "i8mm"],
             "int8": ["avx2", "avx512bw", "avxvnni", "avx512vnni_ymm", "avx512", "amx", "dotprod",
                      "i8mm"]}
    missing = [(p, i) for p, isas in paths.items() for i in isas if i not in LOWP[p]]
    if not missing:
        pytest.skip("this CPU runs every low-precision path")
    # The int8 tables named after an x86 extension alone are not built elsewhere: there the
    # name is unknown; every path name is known on every architecture, and refused.
    x86_tables = {"avx512bw", "avxvnni", "avx512vnni_ymm"}
    on_x86 = platform.machine().lower() in ("x86_64", "amd64")
    for precision, isa in missing:
        message = "cannot run" if on_x86 or isa not in x86_tables else f"unknown ISA '{isa}'"
        with pytest.raises(ValueError, match=message):
            K.PackedWeight(np.ones((1, 1), np.float32), None, precision, isa)
