"""Rows of the benchmark tables, from a benchmark attempt's outcome. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from dtf_core.benchmarks import BenchResult, Summary
from dtf_core.events.bench import BenchImported
from dtf_core.events.task import AttemptOutcome
from dtf_core.task import TaskState
from projections.rows import Row, as_timestamp, none_if_empty, outcome_name


@dataclass(frozen=True, slots=True)
class BenchRows:
    result: Row
    metrics: list[Row]
    host: Row


def _packages(packages: dict[str, str]) -> str:
    """As JSON, names sorted (the worker sorts them; an import may not)."""
    return msgspec.json.encode(dict(sorted(packages.items()))).decode()


def _metric(key: tuple[int, str], batch: int, metric: str, s: Summary,
            samples: list[float] | None = None) -> Row:
    return (*key, batch, metric, s.n, s.mean, s.median, s.p95, s.std, s.ci_low, s.ci_high,
            s.min, s.max, samples)


def _mean_only(key: tuple[int, str], batch: int, metric: str, value: float) -> Row:
    return (*key, batch, metric, 1, value, value, value, 0.0, value, value, value, value, None)


def _rows(key: tuple[int, str], r: BenchResult, head: tuple[object, ...], success: bool,
          at: float, source: str) -> BenchRows:
    """``head``: task_id, attempt, run_id, worker_id (None for an import)."""
    p = r.provenance
    seq, name = key
    result = (
        seq, *head, name, none_if_empty(r.model), r.workload, r.precision,
        r.device, r.hardware_type, p.fingerprint, none_if_empty(p.commit),
        success, r.exclusive, bool(r.noisy),
        none_if_empty("; ".join(r.noisy)), r.other_cores, r.before.load1, r.after.load1,
        r.before.freq_mhz, r.after.freq_mhz, none_if_empty(r.before.governor),
        _packages(p.packages), as_timestamp(at), source,
    )
    metrics: list[Row] = []
    for b in r.batches:
        metrics.append(_metric(key, b.batch_size, "wall_s", b.wall_s, b.samples))
        metrics.append(_metric(key, b.batch_size, "throughput", b.throughput))
        metrics.append(_mean_only(key, b.batch_size, "peak_rss_mb", b.peak_rss_mb))
        for metric, value in sorted(b.metrics.items()):
            if metric not in ("wall_s", "throughput", "peak_rss_mb"):
                metrics.append(_mean_only(key, b.batch_size, metric, value))
    host = (p.fingerprint, p.cpu_model, list(p.gpus), p.os, p.python, as_timestamp(at))
    return BenchRows(result, metrics, host)


def bench_rows(seq: int, event: AttemptOutcome, task: TaskState) -> BenchRows:
    """A benchmark attempt's result (``source`` dtf)."""
    assert event.benchmark is not None
    head = (task.task_id, event.attempt, task.run_id, none_if_empty(event.worker_id))
    return _rows((seq, task.spec.name or task.task_id), event.benchmark, head,
                 outcome_name(event) == "succeeded", event.at, "dtf")


def imported_rows(seq: int, event: BenchImported) -> list[BenchRows]:
    """Each imported benchmark's result (``source`` the tool that measured it)."""
    return [_rows((seq, item.name), item.result, (None, None, event.run_id, None), True,
                  item.measured_at or event.at, event.source) for item in event.results]
