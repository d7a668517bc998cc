"""Rows of the DuckDB tables, built from folded state and events. Pure: no DuckDB here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from msgspec import Struct

from dtf_core.events.codec import event_type
from dtf_core.events.task import AttemptOutcome, TaskRequeued
from dtf_core.events.tests import TestsReported
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState

Row = tuple[Any, ...]

_EPOCH = datetime(1970, 1, 1)
_encode = msgspec.json.encode


def as_timestamp(epoch: float | None) -> datetime | None:
    """Event times are epoch seconds; the tables hold them as naive UTC timestamps."""
    if epoch is None:
        return None
    return _EPOCH + timedelta(seconds=epoch)


def _json(value: dict[str, Any]) -> str:
    return _encode(value).decode()


def none_if_empty(value: str) -> str | None:
    return value or None


def task_row(state: TaskState) -> Row:
    spec = state.spec
    return (
        state.task_id,
        spec.type,
        none_if_empty(spec.name),
        state.status,
        spec.priority,
        state.run_id,
        state.attempt,
        none_if_empty(state.worker_id),
        as_timestamp(state.submitted_at),
        as_timestamp(state.started_at),
        as_timestamp(state.finished_at),
        state.exit_code,
        none_if_empty(state.error),
        state.last_seq,
    )


def worker_row(state: WorkerState) -> Row:
    caps = state.capabilities
    return (
        state.worker_id,
        state.session,
        none_if_empty(state.hostname),
        state.pid,
        state.slots,
        state.status,
        none_if_empty(caps.platform),
        none_if_empty(caps.machine),
        caps.cpu_count,
        caps.memory_gb,
        list(caps.hardware),
        as_timestamp(state.registered_at) if state.registered_at else None,
        state.last_seq,
    )


class AttemptRow(Struct, frozen=True, kw_only=True):
    """One attempt of a task; the field order is the ``attempts`` column order."""

    task_id: str
    attempt: int
    worker_id: str | None
    fencing: int
    leased_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str = "leased"
    exit_code: int | None = None
    duration_s: float | None = None
    error: str | None = None


def outcome_name(event: AttemptOutcome) -> str:
    return event_type(event)  # type: ignore[arg-type]


def model_name(state: TaskState) -> str | None:
    """A benchmark's ``config.model`` (the only task type that names a model)."""
    if state.spec.type != "benchmark":
        return None
    model = state.spec.config.get("model")
    return str(model) if model else None


ACCELERATORS = ("cuda", "rocm", "mps")


def hardware_type(task: TaskState | None, worker: WorkerState | None,
                  used: str | None = None) -> str | None:
    """The hardware the task required and used: what a benchmark reports it ran on; else
    the first required hardware the worker has; else the worker's accelerator when the
    task reserved GPUs; else ``cpu``. None when the worker is unknown."""
    if used:
        return used
    if worker is None:
        return None
    have = worker.capabilities.hardware
    req = task.spec.requirements if task is not None else None
    if req is not None:
        for h in req.hardware:
            if h in have:
                return h
        if req.gpus:
            for h in have:
                if h in ACCELERATORS:
                    return h
    return "cpu"


def test_result_row(
    seq: int, event: AttemptOutcome, task: TaskState, worker: WorkerState | None,
    at: datetime | None = None,
) -> Row:
    """The seed's ``test_results`` row for one attempt outcome (a requeue is a failed try);
    ``at``: ``event.at`` as a timestamp, when the caller has made it already."""
    outcome = outcome_name(event)
    # keys in sorted order, as json.dumps(sort_keys=True) wrote them (built in that order:
    # sorting a dict per row cost a replay of a million events 0.5 s)
    details: dict[str, Any] = {"attempt": event.attempt, "exit_code": event.exit_code,
                               "fencing": event.fencing}
    if event.benchmark is not None:  # its numbers are in bench_results and bench_metrics
        details["noisy"] = event.benchmark.noisy
    details["outcome"] = outcome
    if isinstance(event, TaskRequeued):
        details["reason"] = event.reason
    details["task_type"] = task.spec.type
    if event.benchmark is not None:
        details["workload"] = event.benchmark.workload
    return (
        task.spec.name or task.task_id,
        none_if_empty(event.worker_id),
        model_name(task),
        hardware_type(task, worker, event.benchmark.hardware_type if event.benchmark else None),
        event.duration_s,
        outcome == "succeeded",
        none_if_empty(event.error or (event.reason if isinstance(event, TaskRequeued) else "")),
        as_timestamp(event.at) if at is None else at,
        event.max_rss_mb,
        _json(details),
        seq,
        task.task_id,
        event.attempt,
        "task",
        task.run_id,
    )


def test_case_rows(seq: int, event: TestsReported, task: TaskState | None,
                   worker: WorkerState | None) -> list[Row]:
    """One ``test_results`` row per pytest test (kind ``test``); durations feed the split."""
    rows: dict[str, Row] = {}
    hardware = hardware_type(task, worker)
    at = as_timestamp(event.at)
    for case in event.cases:
        # keys in sorted order, as json.dumps(sort_keys=True) wrote them (msgspec is faster)
        details: dict[str, Any] = {"batch": event.batch, "fencing": event.fencing}
        if case.message:
            details["message"] = case.message
        details["outcome"] = case.outcome
        rows[case.nodeid] = (
            case.nodeid,
            event.worker_id,
            None,
            hardware,
            case.duration_s,
            case.outcome in ("passed", "skipped", "xfailed", "xpassed"),
            none_if_empty(case.message or ("" if case.outcome != "failed" else "failed")),
            at,
            None,
            _json(details),
            seq,
            event.task_id,
            event.attempt,
            "test",
            event.run_id,
        )
    return list(rows.values())
