"""The host around a benchmark: its load, CPU frequency and governor before and after, and
the provenance of a result (hardware fingerprint, OS, Python, packages, commit)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import psutil

from dtf_core.benchmarks import HostState, Provenance
from dtf_core.events.worker import Capabilities

GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def host_state() -> HostState:
    try:
        load1 = psutil.getloadavg()[0]  # os.getloadavg, or psutil's estimate on Windows
    except (OSError, AttributeError):
        load1 = 0.0
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        freq = None
    try:
        governor = GOVERNOR.read_text().strip()
    except OSError:
        governor = ""
    return HostState(load1=round(load1, 3), cpu_count=psutil.cpu_count() or 1,
                     freq_mhz=round(freq.current, 1) if freq and freq.current else None,
                     governor=governor)


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the host has used (all cores, not idle)."""
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0)
                 + getattr(t, "softirq", 0.0))


def git_commit(cwd: str | None) -> str:
    """The commit checked out in ``cwd``, or "" where it is not a git work tree."""
    if not cwd:
        return ""
    try:
        out = subprocess.run(["git", "-C", cwd, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return out if len(out) in (40, 64) else ""


def provenance(caps: Capabilities, packages: dict[str, str], commit: str) -> Provenance:
    return Provenance(
        fingerprint=caps.fingerprint,
        cpu_model=caps.cpu_model or platform.processor(),
        gpus=[f"{g.name} (driver {g.driver})" if g.driver else g.name for g in caps.gpus],
        os=caps.os_release or f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        packages=dict(sorted(packages.items())),
        commit=commit,
    )
