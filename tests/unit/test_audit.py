"""Given a log, when audited, then each broken invariant is named with its sequence."""

from __future__ import annotations

from dtf_core.audit import verify
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskLeased, TaskStarted, TaskSubmitted, TaskSucceeded
from dtf_core.spec import TaskSpec

A = {"actor": "test", "at": 1.0}


def log(*events: Event) -> list[tuple[int, Event]]:
    return list(enumerate(events, 1))


def sub(tid: str, key: str | None = None) -> TaskSubmitted:
    return TaskSubmitted(task_id=tid, spec=TaskSpec(type="noop", idempotency_key=key), **A)


def lease(tid: str, worker: str = "w1") -> TaskLeased:
    return TaskLeased(task_id=tid, worker_id=worker, session="s", attempt=1, **A)


def done(tid: str, fencing: int) -> TaskSucceeded:
    return TaskSucceeded(task_id=tid, fencing=fencing, attempt=1, worker_id="w1", **A)


def test_a_clean_log() -> None:
    audit = verify(log(sub("t1"), lease("t1"), TaskStarted(task_id="t1", attempt=1, fencing=2,
                                                           worker_id="w1", **A), done("t1", 2),
                       sub("t2")))
    assert audit.clean and audit.tasks == 2 and audit.open_tasks == 1


def test_each_invariant_is_named() -> None:
    audit = verify(log(
        sub("t1", key="k"), lease("t1"), lease("t1", "w2"),  # 1: two live leases
        done("t1", 2),  # 3: a result under a superseded lease
        done("t1", 0), done("t1", 0),  # 2: a second and a third terminal event
        sub("t9", key="k"),  # 5: the same key, another task
        TaskSubmitted(task_id="t3", spec=TaskSpec(type="noop"), actor="", at=1.0),  # 6
    ))
    assert [(v.invariant, v.seq) for v in audit.violations] == [
        (1, 3), (3, 4), (2, 5), (2, 6), (5, 7), (6, 8)]
