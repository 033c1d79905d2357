"""cpu_info, the BERTCPU_ISA override, thread settings, and the thread pool across fork."""
import json
import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

import bertcpu
from bertcpu import _core


def run_python(code, *args, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_cpu_info_reports_paths():
    info = bertcpu.cpu_info()
    assert info["available_isas"][0] == "generic"
    assert info["isa"] in info["available_isas"]
    assert set(info) >= {"vendor", "brand", "features", "available_isas", "isa", "isa_forced"}
    if "avx2" in info["features"] and "fma" in info["features"]:
        assert "avx2" in info["available_isas"]
    # aarch64: each path needs the features of the ones below it.
    for path, needs in (("neon", {"neon"}), ("dotprod", {"neon", "dotprod"}),
                        ("i8mm", {"neon", "dotprod", "i8mm"})):
        assert (path in info["available_isas"]) == needs.issubset(info["features"])


@pytest.mark.parametrize("isa", bertcpu.cpu_info()["available_isas"])
def test_env_override_forces_lower_path(isa):
    r = run_python("import bertcpu; i = bertcpu.cpu_info(); print(i['isa'], i['isa_forced'])",
                   BERTCPU_ISA=isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [isa, "True"]


def test_env_override_rejects_unknown_path():
    r = run_python("import bertcpu; bertcpu.cpu_info()", BERTCPU_ISA="sse2")
    assert r.returncode != 0
    assert "BERTCPU_ISA" in r.stderr and "unknown ISA 'sse2'" in r.stderr


def test_env_override_rejects_unsupported_path():
    missing = [i for i in ("avx2", "avx512", "neon", "dotprod", "i8mm")
               if i not in bertcpu.cpu_info()["available_isas"]]
    if not missing:
        pytest.skip("this CPU runs every path")
    r = run_python("import bertcpu; bertcpu.cpu_info()", BERTCPU_ISA=missing[0])
    assert r.returncode != 0 and "supports at most" in r.stderr


# BERTCPU_TEST_HIDE_FEATURES: the path choices of the x86 CPUs with AVX-512 but fewer extensions,
# on this CPU with those features hidden (their model outputs: scripts/test_x86_models.sh).
CPU_INFO = ("import bertcpu, json; i = bertcpu.cpu_info(); print(json.dumps([i['features'], "
            "i['isa'], i['int8_kernels'], i['bfloat16_kernels']]))")


@pytest.mark.parametrize("hidden,int8_kernels", [
    ("avx512_vnni,avx512_bf16", "avx512bw"),  # Skylake-SP: int8 on zmm vpmaddubsw, bf16 fp32
    ("avx512_bf16", "avx512"),            # Cascade Lake, Ice Lake: VNNI, bf16 runs float32
])
def test_hidden_features_give_the_paths_of_cpus_without_them(hidden, int8_kernels):
    features = bertcpu.cpu_info()["features"]
    if not {"avx512_vnni", "avx512_bf16"}.issubset(features):
        pytest.skip("needs a CPU with AVX512_VNNI and AVX512_BF16 to hide them")
    r = run_python(CPU_INFO, BERTCPU_TEST_HIDE_FEATURES=hidden)
    assert r.returncode == 0, r.stderr
    shown, isa, int8, bf16 = json.loads(r.stdout)
    assert shown == [f for f in features if f not in hidden.split(",")]
    assert (isa, int8, bf16) == ("avx512", int8_kernels, "generic")
    r = run_python("import bertcpu, warnings\n"
                   "from bertcpu.config import BertConfig\n"
                   "warnings.simplefilter('error')\n"
                   "bertcpu.BertModel.from_config(BertConfig(hidden_size=64, "
                   "num_attention_heads=2, intermediate_size=128, num_hidden_layers=1), "
                   "dtype='bfloat16')", BERTCPU_TEST_HIDE_FEATURES=hidden)
    assert r.returncode != 0 and "no bfloat16 instructions" in r.stderr


def test_hiding_every_avx_feature_leaves_generic():
    hide = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512_bf16,avx512_vnni,avx_vnni"
    r = run_python(CPU_INFO, BERTCPU_TEST_HIDE_FEATURES=hide)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[1:] == ["generic", "generic", "generic"]


def test_hiding_an_unknown_feature_is_refused():
    r = run_python("import bertcpu; bertcpu.cpu_info()", BERTCPU_TEST_HIDE_FEATURES="avx2,sse9")
    assert r.returncode != 0
    assert "BERTCPU_TEST_HIDE_FEATURES: unknown feature 'sse9'" in r.stderr
    assert "avx512_vnni" in r.stderr  # the names it knows


def test_set_num_threads():
    before = bertcpu.get_num_threads()
    try:
        bertcpu.set_num_threads(3)
        assert bertcpu.get_num_threads() == 3
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(ValueError, match="positive integer"):
                bertcpu.set_num_threads(bad)
    finally:
        bertcpu.set_num_threads(before)


def test_num_threads_env_default():
    r = run_python("import bertcpu; print(bertcpu.get_num_threads())", BERTCPU_NUM_THREADS="3")
    assert r.stdout.strip() == "3", r.stderr
    r = run_python("import bertcpu", BERTCPU_NUM_THREADS="many")
    assert r.returncode != 0 and "BERTCPU_NUM_THREADS" in r.stderr


def _linear_in_child(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 96)).astype(np.float32)
    w = rng.standard_normal((200, 96)).astype(np.float32)
    out = _core.kernels.linear(x, w, None, "none")
    return float(np.abs(out - x.astype(np.float64) @ w.T).max())


def test_thread_pool_survives_fork():
    bertcpu.set_num_threads(2)
    assert _linear_in_child(0) < 1e-3  # the parent's pool is running
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        errors = pool.map_async(_linear_in_child, range(4)).get(timeout=60)
    assert max(errors) < 1e-3


IDLE_AFTER_CALLS = """
import os, sys, threading, time
import numpy as np
import bertcpu
from bertcpu import BertModel
from bertcpu.config import BertConfig

bertcpu.set_num_threads(2)
config = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=512, vocab_size=1000, max_position_embeddings=128)
model = BertModel.from_config(config)
ids = np.random.default_rng(0).integers(0, 1000, (32, 128))
busy = threading.Thread(target=lambda: [model(ids) for _ in range(20)])
busy.start()
if sys.argv[1] == "fork":  # forked while the other thread is inside forward calls
    time.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        model(ids)
        time.sleep(0.05)
        start = time.process_time()
        time.sleep(0.3)
        os._exit(0 if time.process_time() - start < 0.05 else 3)
    busy.join()
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
busy.join()
time.sleep(0.05)
start = time.process_time()
time.sleep(0.3)
print(time.process_time() - start)
"""


@pytest.mark.parametrize("where", ["parent", "forked child"])
def test_workers_idle_after_forward_calls(where):
    # Workers poll between the regions of a forward pass; once calls stop they must sleep, also in
    # a child forked while another thread of the parent was making forward calls.
    result = run_python(IDLE_AFTER_CALLS, "fork" if where == "forked child" else "parent")
    assert result.returncode == 0, result.stderr
    if where == "parent":
        assert float(result.stdout) < 0.05, f"the process used {result.stdout} s of CPU while idle"


WORKER_PLACEMENT = """
import ctypes, json, os
import numpy as np
import bertcpu
from bertcpu import BertModel
from bertcpu.config import BertConfig

def worker_masks():
    masks = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            if f.read().strip() == "bertcpu-worker":
                masks.append(sorted(os.sched_getaffinity(int(tid))))
    return masks

sched_getcpu = ctypes.CDLL(None).sched_getcpu
bertcpu.set_num_threads(2)
model = BertModel.from_config(BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=128, vocab_size=100,
                                         max_position_embeddings=32))
ids = np.arange(32).reshape(2, 16)
first, second = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, {second})  # the calling thread alone
model(ids)
only_second = worker_masks()
os.sched_setaffinity(0, {first})
model(ids)
only_first = worker_masks()
os.sched_setaffinity(0, {first, second})
for _ in range(50):  # a call during which the caller did not move
    cpu = sched_getcpu()
    model(ids)
    if sched_getcpu() == cpu:
        break
print(json.dumps([only_second, only_first, cpu, worker_masks()]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs")
def test_workers_kept_off_the_callers_cpu():
    # A worker woken on the caller's CPU time-slices with it while another CPU idles (what Linux
    # does on a VM whose idle vCPUs look preempted): the pool keeps its workers on the caller's
    # other CPUs, and on the caller's CPU when it has only one, following the caller's CPU set.
    result = run_python(WORKER_PLACEMENT)
    assert result.returncode == 0, result.stderr
    first, second = sorted(os.sched_getaffinity(0))[:2]
    only_second, only_first, caller_cpu, masks = json.loads(result.stdout)
    assert only_second == [[second]]
    assert only_first == [[first]]
    assert masks == [[second if caller_cpu == first else first]]
