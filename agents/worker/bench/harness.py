"""The benchmark harness: ``python -m agents.worker.bench.harness JOB_JSON OUT``.

Runs in its own process (its own process group, killed with the attempt), so that what is
measured is the workload and not the worker. For each batch size: ``warmup`` untimed
iterations, then ``iterations`` timed ones. Writes the samples to OUT as JSON; the worker
summarises them. A workload that cannot run here writes ``{"error": ...}`` and exits 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from agents.proc.plan import platform_of, usage_source
from agents.worker.bench.workloads import BUILTIN, Iteration, WorkloadError, user_callable

CANNOT_RUN = 3
# Packages whose versions go into a result's provenance when installed.
PACKAGES = ("numpy", "torch", "jax", "tensorflow", "onnxruntime", "transformers", "scipy")
_RSS_UNIT = 1 / 1024 if sys.platform != "darwin" else 1 / 1024**2  # ru_maxrss: KiB, macOS B
USAGE = usage_source(platform_of())


def peak_rss_mb() -> float:
    """The peak RSS of this process and of the largest process it waited for, in MB
    (Windows: of this process alone, its peak working set)."""
    if USAGE == "psutil":
        import psutil

        info = psutil.Process().memory_info()
        return float(getattr(info, "peak_wset", info.rss)) / 1024**2
    if sys.platform == "win32":  # usage_source: getrusage on POSIX
        raise NotImplementedError("getrusage is POSIX's (plan.usage_source)")
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return float(max(own, children) * _RSS_UNIT)


def cpu_seconds() -> float:
    """The CPU time of this process and of the processes it waited for (Windows: of this
    process alone)."""
    if USAGE == "psutil":
        import psutil

        times = psutil.Process().cpu_times()
        return float(times.user + times.system)
    if sys.platform == "win32":  # usage_source: getrusage on POSIX
        raise NotImplementedError("getrusage is POSIX's (plan.usage_source)")
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        use = resource.getrusage(who)
        total += use.ru_utime + use.ru_stime
    return total


def _timed(run: Iteration, iterations: int, warmup: int) -> tuple[list[float],
                                                                  dict[str, list[float]]]:
    for _ in range(warmup):
        run()
    walls: list[float] = []
    metrics: dict[str, list[float]] = {}
    for _ in range(iterations):
        t0 = time.perf_counter()
        extra = run()
        walls.append(time.perf_counter() - t0)
        for key, value in (extra or {}).items():
            if isinstance(value, int | float):
                metrics.setdefault(str(key), []).append(float(value))
    return walls, metrics


def _command(argv: list[str], batch: int, job: dict[str, Any]) -> tuple[
        list[float], dict[str, list[float]]]:
    """The user's command, once per batch size: each JSON line it prints is an iteration
    (``wall_s`` and any other numbers); other lines are its output, passed on."""
    env = {**os.environ, "DTF_BENCH_BATCH_SIZE": str(batch),
           "DTF_BENCH_PRECISION": job["precision"],
           "DTF_BENCH_ITERATIONS": str(job["iterations"]),
           "DTF_BENCH_WARMUP": str(job["warmup"])}
    walls: list[float] = []
    metrics: dict[str, list[float]] = {}
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    except OSError as exc:
        raise WorkloadError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            sample = json.loads(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            sample = None
        if not isinstance(sample, dict) or not isinstance(sample.get("wall_s"), int | float):
            sys.stdout.write(line)
            continue
        walls.append(float(sample.pop("wall_s")))
        for key, value in sample.items():
            if isinstance(value, int | float):
                metrics.setdefault(str(key), []).append(float(value))
    code = proc.wait()
    if code != 0:
        raise SystemExit(f"the benchmark command exited with {code}")
    if not walls:
        raise WorkloadError('the benchmark command printed no JSON line with "wall_s"')
    return walls, metrics


def measure(job: dict[str, Any]) -> dict[str, Any]:
    batches = []
    workload = job["workload"]
    for batch in job["batch_sizes"]:
        if job.get("command"):
            walls, metrics = _command(job["command"], batch, job)
        else:
            run = user_callable(job["callable"], batch, job["precision"]) if job.get("callable") \
                else BUILTIN[workload](batch, job["precision"])
            walls, metrics = _timed(run, job["iterations"], job["warmup"])
        batches.append({"batch_size": batch, "wall_s": walls, "metrics": metrics,
                        "peak_rss_mb": peak_rss_mb()})
    device = "cpu"
    if workload == "torch-matmul":
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
    return {"batches": batches, "device": device, "cpu_s": cpu_seconds(),
            "packages": packages(job.get("callable"))}


def packages(target: str | None) -> dict[str, str]:
    names = list(PACKAGES)
    if target:
        names.append(target.partition(":")[0].split(".")[0])
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def main(argv: list[str]) -> int:
    job_json, out_path = argv
    job = json.loads(job_json)
    try:
        result = measure(job)
    except WorkloadError as exc:
        result = {"error": str(exc)}
    with open(out_path, "w") as f:
        json.dump(result, f)
    return CANNOT_RUN if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
