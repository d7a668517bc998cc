"""A benchmark attempt's result, as the worker reports it and the log keeps it, and the
summary of a metric's samples. Pure: numbers in, numbers out."""

from __future__ import annotations

import math
from collections.abc import Sequence

from msgspec import Struct

CONFIDENCE = 0.95
MAX_KEPT_SAMPLES = 2_000  # per result: the summary uses every sample, the log keeps these


class Summary(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A metric over the iterations: ``ci_low``..``ci_high`` is the 95% confidence
    interval of the mean (Student's t); with one sample it is the sample itself."""

    n: int
    mean: float
    median: float
    p95: float
    std: float
    ci_low: float
    ci_high: float
    min: float
    max: float


def summarize(samples: Sequence[float]) -> Summary:
    import numpy as np  # imported here: the events import this module, and agents start fast
    from scipy import stats as sps

    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarize")
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    half = 0.0
    if a.size > 1 and std > 0:
        half = float(sps.t.ppf((1 + CONFIDENCE) / 2, a.size - 1)) * std / math.sqrt(a.size)
    return Summary(n=int(a.size), mean=mean, median=float(np.median(a)),
                   p95=float(np.percentile(a, 95)), std=std, ci_low=mean - half,
                   ci_high=mean + half, min=float(a.min()), max=float(a.max()))


class BatchResult(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One batch size: wall time per iteration (s), throughput (items/s), the peak RSS
    (MB) of the benchmark's processes, other metrics a workload reported (their means),
    and the wall times kept for trend analysis (all, up to MAX_KEPT_SAMPLES per result)."""

    batch_size: int
    wall_s: Summary
    throughput: Summary
    peak_rss_mb: float
    metrics: dict[str, float] = {}
    samples: list[float] = []


class HostState(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The host as a benchmark found it and left it."""

    load1: float
    cpu_count: int
    freq_mhz: float | None = None
    governor: str = ""


class Provenance(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What produced the numbers: ``fingerprint`` hashes the hardware (CPU model and
    flags, GPU models and driver), so that equal fingerprints mean comparable hosts."""

    fingerprint: str
    cpu_model: str
    gpus: list[str] = []
    os: str = ""
    python: str = ""
    packages: dict[str, str] = {}
    commit: str = ""


class BenchResult(Struct, frozen=True, kw_only=True, omit_defaults=True):
    workload: str
    model: str
    precision: str
    device: str  # where it ran: cpu, cuda:0, ...
    hardware_type: str  # cpu, cuda, rocm, mps
    batches: list[BatchResult]
    before: HostState
    after: HostState
    provenance: Provenance
    exclusive: bool = True
    # the CPU other processes used while it ran, in cores; noisy when over NOISY_CORES
    other_cores: float = 0.0
    noisy: list[str] = []  # why the numbers may be disturbed (empty: a quiet host)


NOISY_CORES = 0.25
NOISY_LOAD = 0.5  # load per core before the run
NOISY_FREQ = 0.10  # frequency change between before and after


def noise(before: HostState, after: HostState, other_cores: float) -> list[str]:
    """Why a run's host was noisy (empty when it was quiet enough to trust)."""
    why: list[str] = []
    if other_cores > NOISY_CORES:
        why.append(f"other processes used {other_cores:.2f} cores while it ran")
    if before.load1 > NOISY_LOAD * before.cpu_count:
        why.append(f"load average {before.load1:.2f} on {before.cpu_count} cores before it ran")
    if before.freq_mhz and after.freq_mhz:
        change = abs(after.freq_mhz - before.freq_mhz) / before.freq_mhz
        if change > NOISY_FREQ:
            why.append(f"CPU frequency moved {change:.0%} ({before.freq_mhz:.0f} to "
                       f"{after.freq_mhz:.0f} MHz)")
    return why


def keep_samples(per_batch: list[list[float]]) -> list[list[float]]:
    """The samples a result keeps: all of them up to MAX_KEPT_SAMPLES in total, else an
    even share per batch size, taken evenly across the run."""
    total = sum(len(s) for s in per_batch)
    if total <= MAX_KEPT_SAMPLES:
        return per_batch
    share = max(1, MAX_KEPT_SAMPLES // len(per_batch))
    out = []
    for s in per_batch:
        if len(s) <= share:
            out.append(s)
        else:
            step = (len(s) - 1) / max(share - 1, 1)
            out.append([s[round(i * step)] for i in range(share)])
    return out
