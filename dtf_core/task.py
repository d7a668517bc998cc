"""The task aggregate's decisions: a command and the state in, events out (or a refusal).

Pure: time, ids and the actor come in as arguments. The state and ``evolve`` (folding an
event) are in ``task_state.py``, and importable from here.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from dtf_core.benchmarks import BenchResult
from dtf_core.errors import Refused
from dtf_core.events.task import (
    OUTCOME_EVENTS,
    AttemptOutcome,
    Placement,
    ResultRefused,
    TaskCancelled,
    TaskCancelRequested,
    TaskDeadlineMissed,
    TaskEvent,
    TaskFailed,
    TaskLeased,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    TaskTimedOut,
    TaskWaiting,
)
from dtf_core.retry import may_retry, retry_delay
from dtf_core.spec import TaskSpec
from dtf_core.task_state import LIVE, TERMINAL, Status, TaskState, evolve

__all__ = ["LIVE", "TERMINAL", "Report", "ReportKind", "Status", "TaskState", "evolve"]

ReportKind = Literal["started", "succeeded", "failed", "timed_out", "cancelled", "declined"]


class Report(Struct, frozen=True, kw_only=True):
    """What a worker says about an attempt, under the lease's fencing token."""

    task_id: str
    kind: ReportKind
    fencing: int
    worker_id: str
    attempt: int = 0
    exit_code: int | None = None
    duration_s: float = 0.0
    error: str = ""
    started_at: float | None = None
    max_rss_mb: float | None = None
    benchmark: BenchResult | None = None
    pid: int | None = None
    permanent: bool = False  # a failure no retry can mend (the command cannot start)


def decide_submit(
    existing: TaskState | None,
    task_id: str,
    spec: TaskSpec,
    *,
    run_id: str | None,
    now: float,
    actor: str,
) -> list[TaskEvent]:
    """Submitting an existing id again is a no-op: the same idempotency key, the same task."""
    if existing is not None:
        return []
    return [TaskSubmitted(task_id=task_id, spec=spec, run_id=run_id, at=now, actor=actor)]


def decide_lease(
    state: TaskState,
    *,
    worker_id: str,
    session: str,
    now: float,
    actor: str,
    why: Placement | None = None,
) -> TaskLeased:
    if state.status != "queued" or state.cancel_requested:
        raise Refused(f"task {state.task_id} is {state.status}, not queued")
    if state.not_before > now:
        raise Refused(f"task {state.task_id} waits for its retry delay")
    return TaskLeased(
        task_id=state.task_id,
        worker_id=worker_id,
        session=session,
        attempt=state.attempt + 1,
        at=now,
        actor=actor,
        why=why,
        spec=state.spec,
    )


def decide_steal(state: TaskState, *, worker_id: str, session: str, now: float, actor: str,
                 why: Placement | None = None) -> list[TaskEvent]:
    """Work stealing: move a lease that has not started to an idle worker. The old lease is
    ended (requeued, not counted) and the new one written in the same change, checked
    against the task's last sequence: never two live leases, and the old worker's late
    reports are refused by their stale fencing token."""
    if state.status != "leased" or state.cancel_requested or state.worker_id == worker_id:
        return []
    requeue = decide_lease_lost(state, reason=f"stolen by idle worker {worker_id}", now=now,
                                actor=actor, clean_stop=True)
    queued = state
    for ev in requeue:
        queued = evolve(queued, ev, queued.last_seq + 1)
    return [*requeue, decide_lease(queued, worker_id=worker_id, session=session, now=now,
                                   actor=actor, why=why)]


def _refuse(state: TaskState, report: Report, reason: str, now: float, actor: str) -> ResultRefused:
    return ResultRefused(
        task_id=state.task_id,
        fencing=report.fencing,
        worker_id=report.worker_id,
        outcome=report.kind,
        reason=reason,
        at=now,
        actor=actor,
    )


def decide_report(
    state: TaskState, report: Report, *, now: float, actor: str
) -> list[TaskEvent]:
    """Apply a worker's report only under the current lease; otherwise record a refusal."""
    if state.terminal:
        if report.fencing == state.lease_seq and report.kind in (state.status, "started"):
            return []  # a resend of a report that was already applied
        return [_refuse(state, report, f"task is already {state.status}", now, actor)]
    if state.lease_seq == 0 or report.fencing != state.lease_seq:
        why = f"stale lease {report.fencing}, current lease is {state.lease_seq or 'none'}"
        return [_refuse(state, report, why, now, actor)]
    if report.worker_id != state.worker_id:
        return [_refuse(state, report, "the lease belongs to another worker", now, actor)]
    if report.kind == "declined":
        if state.status != "leased":
            return [_refuse(state, report, "only a lease not yet started can be declined",
                            now, actor)]
        return decide_lease_lost(state, reason=f"declined by worker {report.worker_id}: "
                                 f"{report.error}", now=now, actor=actor, clean_stop=True)
    if report.kind == "started":
        if state.status == "running":
            return []
        return [
            TaskStarted(
                task_id=state.task_id,
                attempt=state.attempt,
                fencing=report.fencing,
                worker_id=report.worker_id,
                pid=report.pid,
                at=now,
                actor=actor,
            )
        ]
    return [_outcome(state, report, now=now, actor=actor)]  # type: ignore[list-item]


def _outcome(state: TaskState, report: Report, *, now: float, actor: str) -> AttemptOutcome:
    fields = {
        "task_id": state.task_id,
        "attempt": state.attempt,
        "fencing": report.fencing,
        "worker_id": report.worker_id,
        "exit_code": report.exit_code,
        "duration_s": report.duration_s,
        "error": report.error,
        "started_at": report.started_at or state.started_at,
        "max_rss_mb": report.max_rss_mb,
        "benchmark": report.benchmark,
        "at": now,
        "actor": actor,
    }
    retryable = report.kind in ("failed", "timed_out") and not report.permanent
    policy = state.spec.retry_policy
    if retryable and not state.cancel_requested and may_retry(state.failures, policy):
        delay = retry_delay(state.failures + 1, state.spec.retry_policy, state.task_id)
        return TaskRequeued(reason=report.kind, not_before=now + delay, **fields)  # type: ignore[arg-type]
    return OUTCOME_EVENTS[report.kind](**fields)  # type: ignore[arg-type]


def decide_cancel(state: TaskState, *, now: float, actor: str, reason: str) -> list[TaskEvent]:
    if state.terminal:
        raise Refused(f"task {state.task_id} is already {state.status}")
    if state.status == "queued":
        return [
            TaskCancelled(
                task_id=state.task_id, attempt=state.attempt, error=reason, at=now, actor=actor
            )
        ]
    if state.cancel_requested:
        return []
    return [
        TaskCancelRequested(
            task_id=state.task_id, worker_id=state.worker_id, reason=reason, at=now, actor=actor
        )
    ]


MAX_LOSSES = 3


def decide_lease_lost(
    state: TaskState, *, reason: str, now: float, actor: str, clean_stop: bool = False
) -> list[TaskEvent]:
    """The live lease's worker is gone: requeue the task, or end it.

    Losing a worker is not the task's failure, so it does not spend the retry policy's
    budget; but a task that has lost ``MAX_LOSSES`` workers (it may be what kills them)
    fails. A worker that stopped cleanly (``clean_stop``) always requeues.
    """
    if not state.live:
        return []
    fields = {
        "task_id": state.task_id,
        "attempt": state.attempt,
        "fencing": state.lease_seq,
        "worker_id": state.worker_id,
        "error": reason,
        "started_at": state.started_at,
        "at": now,
        "actor": actor,
    }
    if state.cancel_requested:
        return [TaskCancelled(**fields)]  # type: ignore[arg-type]
    if clean_stop:
        return [TaskRequeued(reason=reason, counted=False, **fields)]  # type: ignore[arg-type]
    if state.losses + 1 < MAX_LOSSES:
        return [TaskRequeued(reason=reason, counted=False, lost=True, **fields)]  # type: ignore[arg-type]
    fields["error"] = f"{reason}; the task has lost {MAX_LOSSES} workers"
    return [TaskFailed(**fields)]  # type: ignore[arg-type]


def decide_dependency_failed(
    state: TaskState, dependency: TaskState, *, now: float, actor: str
) -> list[TaskEvent]:
    if state.status != "queued":
        return []
    return [
        TaskCancelled(
            task_id=state.task_id,
            attempt=state.attempt,
            error=f"dependency {dependency.task_id} ended {dependency.status}",
            at=now,
            actor=actor,
        )
    ]


__all__ = [
    "TaskFailed",
    "TaskState",
    "TaskTimedOut",
    "decide_cancel",
    "decide_dependency_failed",
    "decide_lease",
    "decide_lease_lost",
    "decide_report",
    "decide_submit",
    "evolve",
]


def decide_deadline(state: TaskState, *, now: float, actor: str) -> list[TaskEvent]:
    """Flag a queued task whose deadline has passed (once)."""
    deadline = state.spec.deadline
    if deadline is None or state.deadline_missed or state.status != "queued" or now <= deadline:
        return []
    return [TaskDeadlineMissed(task_id=state.task_id, deadline=deadline,
                               waited_s=round(now - state.submitted_at, 3), at=now, actor=actor)]


def decide_waiting(state: TaskState, reason: str, detail: str, *, now: float,
                   actor: str) -> list[TaskEvent]:
    """A `waiting` explanation, unless the last one said the same."""
    if state.status != "queued" or reason == state.waiting_reason:
        return []
    return [TaskWaiting(task_id=state.task_id, reason=reason, detail=detail[:500],
                        waited_s=round(now - state.submitted_at, 3), at=now, actor=actor)]
