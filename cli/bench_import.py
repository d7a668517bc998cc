"""pytest-benchmark's JSON (``pytest --benchmark-json FILE``) as DTF benchmark results.

Each benchmark becomes one result with batch size 1 (or ``extra_info["batch_size"]``): its
wall time summary is pytest-benchmark's own statistics per round (rounds, mean, median,
stddev, min, max; the 95% interval from them), its throughput is rounds per second; the
p95 is computed only when the file holds every round's time (``data``), else left NaN.
Peak memory and the host's load were not measured: NaN. The hardware fingerprint is built
from the file's machine and CPU as a DTF worker builds its own, so that imported results
and DTF's compare on the same host."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any

import msgspec
from scipy import stats as sps

from agents.worker.hardware.parse import CPU_FLAGS
from dtf_core.benchmarks import BatchResult, BenchResult, HostState, Provenance, Summary
from dtf_core.commands import ImportResults
from dtf_core.errors import InvalidInput
from dtf_core.events.bench import ImportedResult
from dtf_core.events.worker import Capabilities

SOURCE = "pytest-benchmark"
NAN = float("nan")


def _summary(stats: dict[str, Any], data: list[float]) -> Summary:
    n, mean, std = int(stats["rounds"]), float(stats["mean"]), float(stats["stddev"])
    half = float(sps.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else 0.0
    p95 = float(sorted(data)[min(len(data) - 1, int(0.95 * len(data)))]) \
        if data and len(data) == n else NAN
    return Summary(n=n, mean=mean, median=float(stats["median"]), p95=p95, std=std,
                   ci_low=mean - half, ci_high=mean + half, min=float(stats["min"]),
                   max=float(stats["max"]))


def _throughput(s: Summary, batch: int) -> Summary:
    def per_s(t: float) -> float:
        return batch / t if t > 0 else NAN

    return Summary(n=s.n, mean=per_s(s.mean), median=per_s(s.median), p95=NAN, std=NAN,
                   ci_low=per_s(s.ci_high), ci_high=per_s(s.ci_low), min=per_s(s.max),
                   max=per_s(s.min))


def provenance(doc: dict[str, Any]) -> tuple[Provenance, int]:
    machine = doc.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    flags = {str(f) for f in cpu.get("flags") or ()}
    if "asimd" in flags:
        flags.add("neon")
    caps = Capabilities(machine=str(machine.get("machine", "")),
                        cpu_model=str(cpu.get("brand_raw", "")),
                        cpu_flags=tuple(f for f in CPU_FLAGS if f in flags))
    commit = (doc.get("commit_info") or {}).get("id") or ""
    return Provenance(
        fingerprint=caps.fingerprint, cpu_model=caps.cpu_model,
        os=f"{machine.get('system', '')} {machine.get('release', '')}".strip(),
        python=str(machine.get("python_version", "")),
        packages={SOURCE: str(doc.get("version", ""))},
        commit="" if commit == "unversioned" else str(commit)[:64],
    ), int(cpu.get("count") or 0)


def results(doc: dict[str, Any]) -> list[ImportedResult]:
    origin, cpus = provenance(doc)
    try:
        measured = datetime.fromisoformat(str(doc["datetime"])).timestamp()
    except (KeyError, ValueError):
        measured = None
    host = HostState(load1=NAN, cpu_count=cpus)
    out = []
    for bench in doc.get("benchmarks") or ():
        stats, extra = bench["stats"], bench.get("extra_info") or {}
        data = [float(x) for x in stats.get("data") or ()]
        batch = int(extra.get("batch_size", 1))
        wall = _summary(stats, data)
        out.append(ImportedResult(name=str(bench.get("fullname") or bench["name"]),
                                  measured_at=measured, result=BenchResult(
            workload=SOURCE, model=str(extra.get("model", "")),
            precision=str(extra.get("precision", "")), device="cpu",
            hardware_type=str(extra.get("hardware", "cpu")),
            batches=[BatchResult(batch_size=batch, wall_s=wall,
                                 throughput=_throughput(wall, batch), peak_rss_mb=NAN,
                                 samples=data[:2000])],
            before=host, after=host, provenance=origin, exclusive=False)))
    return out


def import_command(raw: bytes, run_id: str | None = None) -> ImportResults:
    """The api command importing ``raw`` (the file's bytes); its id is their hash."""
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or "benchmarks" not in doc or "machine_info" not in doc:
        raise InvalidInput("not pytest-benchmark's JSON (no 'benchmarks' and "
                           "'machine_info'): write it with `pytest --benchmark-json FILE`")
    try:
        found = results(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"a benchmark in the file lacks its statistics: {exc!r}") from None
    return ImportResults(import_id=hashlib.sha256(raw).hexdigest()[:32], source=SOURCE,
                         results=found, run_id=run_id)
