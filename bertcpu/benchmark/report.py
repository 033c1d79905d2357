"""What a benchmark run returns (BenchmarkReport: per shape, per system) and its Markdown table."""
import dataclasses
from typing import Optional

from .peak import Peak
from .systems import _system_base, system_precision


@dataclasses.dataclass
class SystemResult:
    system: str
    times_ms: list
    median_ms: float
    best_ms: float  # the fastest round: the least disturbed by other processes
    sequences_per_s: float
    tokens_per_s: float  # real tokens
    gflops: float  # useful (real-token) FLOPs per second
    percent_of_peak: Optional[float]
    max_abs_diff: Optional[float]  # vs the reference system, real positions; None without one
    mean_cosine: Optional[float]  # of the real positions' rows vs the reference; None without one
    # This system's median / the median of the bertcpu system of the same precision (bertcpu
    # itself for an fp32 peer, bertcpu-bf16 for a bf16 one...); None without that system.
    speedup_of_bertcpu: Optional[float]


@dataclasses.dataclass
class ShapeResult:
    shape: str
    batch: int
    padded_seq: int
    lengths: list
    real_tokens: int
    gflop: float  # useful GFLOP per batch
    rounds: int
    systems: list  # of SystemResult, in the order the systems were given


@dataclasses.dataclass
class BenchmarkReport:
    model: str
    config: dict
    threads: int
    systems: dict  # name -> version and settings
    peak: Optional[Peak]
    nominal_peak: Optional[Peak]
    reference: Optional[str]
    shapes: list  # of ShapeResult
    machine: dict
    load_average: dict  # /proc/loadavg before and after: other processes skew absolute times

    def to_dict(self):
        return dataclasses.asdict(self)


def _format_ms(ms):
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def format_report(report):
    """The report as a Markdown table with a header saying what ran and how."""
    c = report.config
    lines = [f"### {report.model}: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
             f"{c['num_attention_heads']} heads, FFN {c['intermediate_size']}; "
             f"{report.threads} threads", ""]
    if report.peak:
        lines.append(f"fp32 peak for % of peak: {report.peak.gflops:.1f} GFLOP/s "
                     f"({report.peak.method}: {report.peak.detail})")
    if report.nominal_peak and report.peak and report.peak.method != "nominal":
        lines.append(f"(nominal from the reported clock: {report.nominal_peak.gflops:.1f} GFLOP/s, "
                     f"{report.nominal_peak.detail})")
    for name, description in report.systems.items():
        lines.append(f"- {name}: {description}")
    mixed = [s for s in report.shapes if s.real_tokens != s.batch * s.padded_seq]
    for shape in mixed:
        lines.append(f"- {shape.shape}: {shape.real_tokens} real tokens in a "
                     f"{shape.batch}x{shape.padded_seq} padded batch "
                     f"({100 * shape.real_tokens / (shape.batch * shape.padded_seq):.0f}% real)")
    load = report.load_average
    if load["before"] is not None:
        lines.append(f"- load average (1 min) before/after: {load['before']:.2f} / "
                     f"{load['after']:.2f}")
    lines.append("- ms/batch: median over the rounds; best ms: the fastest round. seq/s, "
                 "GFLOP/s (real tokens only), % peak and speedups follow from the medians.")
    lines.append("")

    with_speedup = any(r.speedup_of_bertcpu is not None for s in report.shapes for r in s.systems)
    lowp = any(system_precision(name) != "fp32" for name in report.systems)
    header = ["shape", "rounds", "system", "ms/batch", "best ms", "seq/s", "GFLOP/s", "% peak"]
    if with_speedup:
        header.append("bertcpu speedup (same precision)" if lowp else "bertcpu speedup")
    header.append(f"max abs diff vs {report.reference}" if report.reference else "max abs diff")
    if lowp:
        header.append("mean row cosine")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    for shape in report.shapes:
        for i, r in enumerate(shape.systems):
            row = [shape.shape if i == 0 else "", str(shape.rounds) if i == 0 else "", r.system,
                   _format_ms(r.median_ms), _format_ms(r.best_ms), f"{r.sequences_per_s:.1f}",
                   f"{r.gflops:.1f}",
                   f"{r.percent_of_peak:.0f}%" if r.percent_of_peak is not None else "n/a"]
            if with_speedup:
                row.append("" if _system_base(r.system) == "bertcpu" or r.speedup_of_bertcpu is None
                           else f"{r.speedup_of_bertcpu:.2f}x")
            if r.system == report.reference:
                row.append("(reference)")
                if lowp:
                    row.append("")
            else:
                row.append(f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "n/a")
                if lowp:
                    row.append(f"{r.mean_cosine:.6f}" if r.mean_cosine is not None else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
