"""Rows of the benchmark tables, from a benchmark attempt's outcome. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dtf_core.benchmarks import Summary
from dtf_core.events.task import AttemptOutcome
from dtf_core.task import TaskState
from projections.rows import Row, as_timestamp, none_if_empty, outcome_name


@dataclass(frozen=True, slots=True)
class BenchRows:
    result: Row
    metrics: list[Row]
    host: Row


def _metric(seq: int, batch: int, name: str, s: Summary,
            samples: list[float] | None = None) -> Row:
    return (seq, batch, name, s.n, s.mean, s.median, s.p95, s.std, s.ci_low, s.ci_high,
            s.min, s.max, samples)


def _mean_only(seq: int, batch: int, name: str, value: float) -> Row:
    return (seq, batch, name, 1, value, value, value, 0.0, value, value, value, value, None)


def bench_rows(seq: int, event: AttemptOutcome, task: TaskState) -> BenchRows:
    r = event.benchmark
    assert r is not None
    p = r.provenance
    result = (
        seq, task.task_id, event.attempt, task.run_id, none_if_empty(event.worker_id),
        task.spec.name or task.task_id, none_if_empty(r.model), r.workload, r.precision,
        r.device, r.hardware_type, p.fingerprint, none_if_empty(p.commit),
        outcome_name(event) == "succeeded", r.exclusive, bool(r.noisy),
        none_if_empty("; ".join(r.noisy)), r.other_cores, r.before.load1, r.after.load1,
        r.before.freq_mhz, r.after.freq_mhz, none_if_empty(r.before.governor),
        json.dumps(p.packages, sort_keys=True), as_timestamp(event.at),
    )
    metrics: list[Row] = []
    for b in r.batches:
        metrics.append(_metric(seq, b.batch_size, "wall_s", b.wall_s, b.samples))
        metrics.append(_metric(seq, b.batch_size, "throughput", b.throughput))
        metrics.append(_mean_only(seq, b.batch_size, "peak_rss_mb", b.peak_rss_mb))
        for name, value in sorted(b.metrics.items()):
            if name not in ("wall_s", "throughput", "peak_rss_mb"):
                metrics.append(_mean_only(seq, b.batch_size, name, value))
    host = (p.fingerprint, p.cpu_model, list(p.gpus), p.os, p.python, as_timestamp(event.at))
    return BenchRows(result, metrics, host)
