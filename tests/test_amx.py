"""The amx path (issue 14): AMX-BF16 / AMX-INT8 tile kernels, its selection, self-test and fallback.

The kernels are one source over a tile backend (csrc/kernels/lowp_amx.h): on every CPU the tables
"amx_model" run it over a scalar model of the tile instructions, and are compared here with the
generic kernels' arithmetic at shapes around the tiles (16 rows, 32 bf16 / 64 int8 of K, 16 / 32
columns); the parametrized tests of test_kernels_lowp.py run them too. The table "amx" runs the real
instructions, tested where bertcpu.cpu_info()["amx_usable"]. The selection and the fallback are
exercised without AMX through BERTCPU_TEST_AMX_MODEL (csrc/cpu/cpu_isa.h), in subprocesses.
"""
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import bertcpu
from bertcpu import _core

from test_kernels_lowp import assert_bf16_same_math, exact, int8_same_math, bf16_bound, inputs

K = _core.kernels
INFO = bertcpu.cpu_info()
LOWP = K.lowp_isas()
AMX_TABLES = ["amx_model"] + (["amx"] if INFO["amx_usable"] else [])
CPU_HAS_AMX = {"amx_tile", "amx_bf16", "amx_int8"} <= set(INFO["features"])
needs_amx = pytest.mark.skipif(not INFO["amx_usable"], reason="no usable AMX on this CPU")
needs_avx512 = pytest.mark.skipif(
    not {"avx512_bf16", "avx512_vnni"} <= set(INFO["features"])
    or "avx512" not in INFO["available_isas"],
    reason="the AMX model stands in for the amx path on AVX-512 CPUs only")

# Around the tiles: M below, at and past 16 and 32 rows; K below, at and past the 32 (bf16) / 64
# (int8) K step and the 256 K chunk; N below, at and past a 16-column tile and the 32-column panel.
TILE_SHAPES = [(1, 1, 1), (15, 31, 15), (16, 32, 16), (17, 33, 17), (31, 63, 31), (32, 64, 32),
               (33, 65, 33), (5, 255, 70), (48, 256, 64), (47, 257, 65), (70, 511, 100)]


@pytest.fixture
def rng():
    return np.random.default_rng(77)


def test_model_tables_are_on_every_cpu():
    assert "amx_model" in LOWP["bf16"] and "amx_model" in LOWP["int8"]
    assert ("amx" in LOWP["bf16"]) == ("amx" in LOWP["int8"]) == INFO["amx_usable"]


@pytest.mark.parametrize("table", AMX_TABLES)
@pytest.mark.parametrize("shape", TILE_SHAPES)
def test_bf16_tiles(table, rng, shape):
    x, w, b = inputs(rng, *shape)
    out = K.linear_bf16(x, w, b, "none", table)
    assert_bf16_same_math(table, out, x, w, b)
    assert np.all(np.abs(out - exact(x, w, b)) <= bf16_bound(x, w) + 1e-6)


@pytest.mark.parametrize("table", AMX_TABLES)
@pytest.mark.parametrize("shape", TILE_SHAPES)
def test_int8_tiles(table, rng, shape):
    x, w, b = inputs(rng, *shape)
    np.testing.assert_array_equal(K.linear_int8(x, w, b, "none", table), int8_same_math(x, w, b))


@needs_amx
def test_real_instructions_at_bert_base_8x128(rng):
    """Where the CPU runs AMX: a BERT-base layer at batch 8 x 128 tokens (the tile shapes above
    run on "amx" too)."""
    x, w, b = inputs(rng, 1024, 768, 768)
    np.testing.assert_array_equal(K.linear_int8(x, w, b, "none", "amx"), int8_same_math(x, w, b))
    assert_bf16_same_math("amx", K.linear_bf16(x, w, b, "none", "amx"), x, w, b)


def test_self_test_passes_on_the_model():
    assert K.self_test("amx_model") == ""
    assert K.self_test("generic") == ""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the AMX kernels are built on x86-64 only")
def test_self_test_survives_an_illegal_instruction():
    """The real AMX kernels, run whether or not the CPU has AMX: without it (or without the OS's
    permission) the tile instructions raise SIGILL, which the self-test catches and reports."""
    result = K.self_test("amx")
    if INFO["amx_usable"]:
        assert result == ""
    elif not CPU_HAS_AMX:
        assert result == "illegal instruction (SIGILL) in the kernels"
    # The process goes on, and SIGILL is handled as before (pytest's faulthandler).
    assert K.self_test("amx_model") == ""


@pytest.mark.skipif(CPU_HAS_AMX, reason="this CPU has AMX")
def test_amx_refused_without_amx():
    assert not INFO["amx_usable"] and INFO["amx_warning"] == ""
    assert "amx" not in INFO["available_isas"]
    w = np.ones((3, 4), np.float32)  # x86: the amx tables; aarch64: the amx path
    for precision in ("bf16", "int8"):
        with pytest.raises(ValueError, match="this CPU cannot run the amx"):
            K.PackedWeight(w, None, precision, "amx")
    r = subprocess.run([sys.executable, "-c", "import bertcpu; bertcpu.cpu_info()"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, BERTCPU_ISA="amx"))
    assert r.returncode != 0 and "BERTCPU_ISA=amx but this CPU supports at most" in r.stderr


# Run with the tile model standing in for AMX: cpu_info, the kernels a model gets and their output
# against the float32 model, and what a model load warns.
HOOK_SCRIPT = """
import json, warnings
import numpy as np
import bertcpu
from bertcpu import BertModel
info = bertcpu.cpu_info()
config = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=200)
ids = np.random.default_rng(0).integers(1000, 30000, (2, 20))
reference = BertModel.from_config(config, seed=3)(ids)["last_hidden_state"]
out = {key: info[key] for key in ("isa", "available_isas", "bfloat16_isa", "bfloat16_kernels",
                                  "int8_isa", "int8_kernels", "amx_usable", "amx_warning")}
for dtype in ("bfloat16", "int8"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = BertModel.from_config(config, seed=3, dtype=dtype)
    hidden = model(ids)["last_hidden_state"]
    cosine = (hidden * reference).sum(-1) / np.linalg.norm(hidden, axis=-1) / np.linalg.norm(
        reference, axis=-1)
    out[dtype] = dict(kernels=model.kernels, isa=model.isa, min_cosine=float(cosine.min()),
                      warnings=[str(w.message) for w in caught])
print(json.dumps(out))
"""


def run_with_hook(value):
    r = subprocess.run([sys.executable, "-c", HOOK_SCRIPT], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, BERTCPU_TEST_AMX_MODEL=value))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_avx512
def test_selection_picks_amx_kernels_that_pass_the_self_test():
    out = run_with_hook("1")
    assert out["isa"] == "amx" and out["available_isas"][-1] == "amx"
    assert out["amx_usable"] and out["amx_warning"] == ""
    assert out["bfloat16_isa"] == out["int8_isa"] == "amx"
    assert out["bfloat16_kernels"] == out["int8_kernels"] == "amx_model"
    for dtype, cosine in (("bfloat16", 0.9999), ("int8", 0.999)):
        assert out[dtype]["kernels"] == out[dtype]["isa"] == "amx"
        assert out[dtype]["warnings"] == []
        assert out[dtype]["min_cosine"] > cosine


@needs_avx512
def test_failed_self_test_falls_back_to_avx512_with_a_warning():
    out = run_with_hook("wrong")
    assert out["isa"] == "amx"  # the fp32 path (avx512's kernels) is unaffected
    assert not out["amx_usable"]
    assert out["amx_warning"].startswith(
        "the AMX kernels failed their self-test (bf16 result [0, 0]")
    assert out["bfloat16_isa"] == out["int8_isa"] == "avx512"
    assert out["bfloat16_kernels"] == out["int8_kernels"] == "avx512"
    for dtype, cosine in (("bfloat16", 0.9999), ("int8", 0.999)):
        assert out[dtype]["kernels"] == "avx512"
        assert [w for w in out[dtype]["warnings"] if w.startswith("AMX is not used: the AMX")]
        assert out[dtype]["min_cosine"] > cosine


def test_hook_off_means_the_real_instructions():
    out = subprocess.run([sys.executable, "-c", "import bertcpu, json; i = bertcpu.cpu_info(); "
                          "print(json.dumps([i['isa'], i['amx_usable']]))"],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, BERTCPU_TEST_AMX_MODEL="0"))
    assert json.loads(out.stdout) == [INFO["isa"], INFO["amx_usable"]]
