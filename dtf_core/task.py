"""The task aggregate: state, ``evolve`` (fold one event) and ``decide`` (command -> events).

Pure: time, ids and the actor come in as arguments. ``seq`` is the event's stream sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from msgspec import Struct, structs

from dtf_core.errors import NotFound, Refused
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

Status = Literal[
    "queued", "leased", "running", "succeeded", "failed", "cancelled", "timed_out"
]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
LIVE: frozenset[str] = frozenset({"leased", "running"})
ReportKind = Literal["started", "succeeded", "failed", "timed_out", "cancelled", "declined"]


class TaskState(Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    task_id: str
    spec: TaskSpec
    run_id: str | None = None
    status: Status = "queued"
    attempt: int = 0
    lease_seq: int = 0
    worker_id: str = ""
    session: str = ""
    last_seq: int = 0
    submitted_at: float = 0.0
    not_before: float = 0.0
    cancel_requested: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str = ""
    failures: int = 0
    losses: int = 0
    refused_results: int = 0
    deadline_missed: bool = False
    owner: str = ""  # who submitted it (the verified actor): quotas count per owner
    leased_at: float | None = None  # when the live lease was written
    waiting_reason: str = ""  # the last `waiting` explanation written for it

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def live(self) -> bool:
        return self.status in LIVE


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
    pid: int | None = None
    permanent: bool = False  # a failure no retry can mend (the command cannot start)


def evolve(state: TaskState | None, event: TaskEvent, seq: int) -> TaskState:
    """Fold one event. Events at or below ``state.last_seq`` were already folded."""
    fn = _APPLY.get(type(event))
    if fn is not None and state is not None:  # the hot path of every fold
        return state if seq <= state.last_seq else fn(state, event, seq)
    if isinstance(event, TaskSubmitted):
        if state is not None:
            return state
        return TaskState(
            task_id=event.task_id,
            spec=event.spec,
            run_id=event.run_id,
            owner=event.actor,
            last_seq=seq,
            submitted_at=event.at,
        )
    if state is None:
        raise NotFound(f"event {type(event).__name__} for unknown task {event.task_id}")
    if seq <= state.last_seq:
        return state
    return structs.replace(state, last_seq=seq)  # an event type this fold does not know


def _leased(state: TaskState, event: TaskLeased, seq: int) -> TaskState:
    return structs.replace(state, last_seq=seq, status="leased", attempt=event.attempt,
                           lease_seq=seq, worker_id=event.worker_id, session=event.session,
                           started_at=None, leased_at=event.at)


def _started(state: TaskState, event: TaskStarted, seq: int) -> TaskState:
    return structs.replace(state, last_seq=seq, status="running", started_at=event.at)


def _requeued(state: TaskState, event: TaskRequeued, seq: int) -> TaskState:
    return structs.replace(
        state, last_seq=seq, status="queued", lease_seq=0, worker_id="", session="",
        not_before=event.not_before, exit_code=event.exit_code,
        error=event.error or event.reason,
        failures=state.failures + (1 if event.counted else 0),
        losses=state.losses + (1 if event.lost else 0),
    )


def _cancel_requested(state: TaskState, event: TaskCancelRequested, seq: int) -> TaskState:
    return structs.replace(state, last_seq=seq, cancel_requested=True)


def _refused(state: TaskState, event: ResultRefused, seq: int) -> TaskState:
    return structs.replace(state, last_seq=seq, refused_results=state.refused_results + 1)


def _deadline_missed(state: TaskState, event: TaskDeadlineMissed, seq: int) -> TaskState:
    return structs.replace(state, last_seq=seq, deadline_missed=True)


def _waiting(state: TaskState, event: TaskWaiting, seq: int) -> TaskState:
    return structs.replace(state, last_seq=seq, waiting_reason=event.reason)


def _outcome_of(status: Status) -> Callable[[TaskState, AttemptOutcome, int], TaskState]:
    def apply(state: TaskState, event: AttemptOutcome, seq: int) -> TaskState:
        return structs.replace(state, last_seq=seq, status=status, finished_at=event.at,
                               exit_code=event.exit_code, error=event.error,
                               started_at=event.started_at or state.started_at)
    return apply


# One lookup per event instead of a chain of isinstance checks (the fold is the hot path
# of every cold start and of `dtf replay`).
_APPLY: dict[type, Callable[[TaskState, Any, int], TaskState]] = {
    TaskLeased: _leased,
    TaskStarted: _started,
    TaskRequeued: _requeued,
    TaskCancelRequested: _cancel_requested,
    ResultRefused: _refused,
    TaskDeadlineMissed: _deadline_missed,
    TaskWaiting: _waiting,
    **{cls: _outcome_of(name) for name, cls in OUTCOME_EVENTS.items()},  # type: ignore[arg-type]
}


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
