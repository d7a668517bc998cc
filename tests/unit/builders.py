"""Builders for given-events / when-command / then-events tests of the task aggregate."""

from __future__ import annotations

from dtf_core.events.task import TaskEvent, TaskLeased, TaskSubmitted
from dtf_core.spec import RetryPolicy, TaskSpec
from dtf_core.task import Report, ReportKind, TaskState, evolve

T0 = 1_000.0
ACTOR = "tester"


def spec(max_retries: int = 0, delay: float = 0.0, deps: tuple[str, ...] = ()) -> TaskSpec:
    return TaskSpec(
        type="noop",
        retry_policy=RetryPolicy(max_retries=max_retries, retry_delay_seconds=delay),
        dependencies=deps,
    )


def submitted(task_id: str = "t1", task_spec: TaskSpec | None = None) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id, spec=task_spec or spec(), run_id="r1", at=T0, actor=ACTOR
    )


def leased(
    task_id: str = "t1", worker: str = "w1", attempt: int = 1, session: str = "s1"
) -> TaskLeased:
    return TaskLeased(
        task_id=task_id, worker_id=worker, session=session, attempt=attempt, at=T0 + 1, actor=ACTOR
    )


def fold(*events: TaskEvent, first_seq: int = 1) -> TaskState:
    """Fold events with consecutive sequences from ``first_seq``."""
    state: TaskState | None = None
    for seq, event in enumerate(events, start=first_seq):
        state = evolve(state, event, seq)
    assert state is not None
    return state


def then(state: TaskState, events: list[TaskEvent]) -> TaskState:
    """Fold decided events after ``state``, as the log would store them."""
    for event in events:
        state = evolve(state, event, state.last_seq + 1)
    return state


def report(
    kind: ReportKind, fencing: int, worker: str = "w1", task_id: str = "t1", **kw: object
) -> Report:
    return Report(task_id=task_id, kind=kind, fencing=fencing, worker_id=worker, **kw)  # type: ignore[arg-type]
