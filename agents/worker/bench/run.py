"""A benchmark attempt on the worker: the harness in its own process group (killed with
the attempt, like any command), the host watched before and after, and the samples turned
into a summarised, attributed result."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.worker.bench.harness import CANNOT_RUN
from agents.worker.bench.host import busy_cpu_seconds, git_commit, host_state, provenance
from agents.worker.bench.workloads import default_workload
from agents.worker.runner import Outcome
from dtf_core.benchmarks import (
    BatchResult,
    BenchResult,
    HostState,
    Provenance,
    keep_samples,
    noise,
    summarize,
)
from dtf_core.events.worker import Capabilities
from dtf_core.spec import BenchmarkConfig, CommandConfig

RunCommand = Callable[[CommandConfig], Awaitable[Outcome]]


@dataclass(frozen=True)
class Measured:
    outcome: Outcome
    result: BenchResult | None


def job(cfg: BenchmarkConfig, workload: str) -> dict[str, Any]:
    return {"workload": workload, "callable": cfg.callable,
            "command": list(cfg.command) if cfg.command else None,
            "batch_sizes": list(cfg.batch_sizes), "precision": cfg.precision,
            "iterations": cfg.iterations, "warmup": cfg.warmup}


def workload_name(cfg: BenchmarkConfig, on_gpu: bool) -> str:
    if cfg.callable:
        return f"callable:{cfg.callable}"
    if cfg.command:
        return "command"
    return cfg.workload or default_workload(on_gpu)


def build_result(raw: dict[str, Any], cfg: BenchmarkConfig, workload: str, *,
                 before: HostState, after: HostState, other_cores: float,
                 origin: Provenance, exclusive: bool) -> BenchResult:
    """The harness's samples summarised: per batch size, wall time and throughput (items
    per second, the batch size over the wall time) with their spread."""
    kept = keep_samples([[float(w) for w in b["wall_s"]] for b in raw["batches"]])
    batches = []
    for b, samples in zip(raw["batches"], kept, strict=True):
        walls = [float(w) for w in b["wall_s"]]
        size = int(b["batch_size"])
        metrics = {k: sum(v) / len(v) for k, v in b.get("metrics", {}).items() if v}
        batches.append(BatchResult(
            batch_size=size, wall_s=summarize(walls),
            throughput=summarize([size / w for w in walls if w > 0] or [0.0]),
            peak_rss_mb=round(float(b.get("peak_rss_mb", 0.0)), 2), metrics=metrics,
            samples=samples))
    device = str(raw.get("device", "cpu"))
    return BenchResult(
        workload=workload, model=cfg.model, precision=cfg.precision, device=device,
        hardware_type=device.split(":")[0], batches=batches, before=before, after=after,
        provenance=origin, exclusive=exclusive, other_cores=round(other_cores, 3),
        noisy=noise(before, after, other_cores))


async def measure(cfg: BenchmarkConfig, *, cwd: str | None, env: dict[str, str],
                  caps: Capabilities, exclusive: bool, on_gpu: bool,
                  run: RunCommand, chown: Callable[[str], None] | None = None) -> Measured:
    workload = workload_name(cfg, on_gpu)
    where = tempfile.mkdtemp(prefix="dtf-bench-")
    try:
        if chown is not None:
            chown(where)  # the task's user writes the result
        out_path = os.path.join(where, "out.json")
        argv = (sys.executable, "-m", "agents.worker.bench.harness", json.dumps(job(cfg, workload)),
                out_path)
        before, busy0, t0 = host_state(), busy_cpu_seconds(), time.monotonic()
        outcome = await run(CommandConfig(argv=argv, cwd=cwd, env=env))
        after, busy, wall = host_state(), busy_cpu_seconds() - busy0, time.monotonic() - t0
        raw = _read(out_path)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if outcome.kind != "succeeded" or raw is None:
        if outcome.exit_code == CANNOT_RUN and raw is not None and "error" in raw:
            outcome.error, outcome.permanent = f"{raw['error']} (not retried)", True
        return Measured(outcome, None)
    other = max(0.0, busy - float(raw.get("cpu_s", 0.0))) / wall if wall > 0 else 0.0
    origin = provenance(caps, raw.get("packages", {}), cfg.commit or git_commit(cwd))
    result = build_result(raw, cfg, workload, before=before, after=after, other_cores=other,
                          origin=origin, exclusive=exclusive)
    peaks = [b.peak_rss_mb for b in result.batches]
    outcome.max_rss_mb = max([*peaks, outcome.max_rss_mb or 0.0]) or None
    return Measured(outcome, result)


def _read(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
