"""Process-wide runtime settings: the thread count shared by the engine and the tokenizer, and
what the CPU offers.

Every environment knob bertcpu reads is read here or in csrc/cpu/ (BERTCPU_ISA), and documented in
README.md:
- BERTCPU_NUM_THREADS: default thread count (otherwise the CPUs this process may run on).
- BERTCPU_ISA: generic | avx2 | avx512 | amx (x86-64) or generic | neon | dotprod | i8mm
  (aarch64), a ceiling on the kernels chosen from CPUID / the OS (read by the core).
- BERTCPU_TEST_AMX_MODEL: for tests only: 1 stands the scalar AMX tile model in for the AMX
  instructions on an AVX-512 CPU, wrong also makes the AMX self-test fail (csrc/cpu/cpu_isa.h).
"""
import os

from . import _core

_ENV_THREADS = "BERTCPU_NUM_THREADS"


def available_cpus():
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota if one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _cgroup_cpu_limit():
    """The cgroup v2 (cpu.max) or v1 (cfs quota/period) CPU limit, rounded up, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, -(-int(quota) // int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, -(-quota // period))
    except (OSError, ValueError):
        pass
    return None


def _default_num_threads():
    value = os.environ.get(_ENV_THREADS)
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"{_ENV_THREADS} must be a positive integer, got {value!r}") from None
        if n < 1:
            raise ValueError(f"{_ENV_THREADS} must be a positive integer, got {value!r}")
        return n
    return available_cpus()


def set_num_threads(n):
    """Set the number of threads used by the engine and by batch tokenization."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be a positive integer, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads():
    """The number of threads the engine and batch tokenization use."""
    return _core.get_num_threads()


def cpu_info():
    """What the CPU offers and which kernels run: vendor, features, available ISA paths, chosen ISA."""
    return dict(_core.cpu_info())


_core.set_num_threads(_default_num_threads())
