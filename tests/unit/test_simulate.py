"""Given a recorded history, when simulated under a policy, then the numbers follow."""

from __future__ import annotations

from dtf_core.events.codec import Event
from dtf_core.events.task import TaskLeased, TaskSubmitted, TaskSucceeded
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.policy import DefaultPolicy, FifoPolicy
from dtf_core.simulate import History, simulate
from dtf_core.spec import TaskSpec

A = {"actor": "test"}


def history() -> list[tuple[int, Event]]:
    """One worker, one slot. Run "huge": 6 tasks of 1 s at t=0; run "small": 2 tasks of 1 s
    at t=0.5. What really happened: FIFO order (the huge run first)."""
    events: list[Event] = [WorkerRegistered(worker_id="w1", session="s", hostname="h", pid=1,
                                            slots=1, capabilities=Capabilities(), at=0.0, **A)]
    tasks = [(f"h{i}", "huge", 0.0) for i in range(6)] + [(f"s{i}", "small", 0.5)
                                                           for i in range(2)]
    for task_id, run, at in tasks:
        events.append(TaskSubmitted(task_id=task_id, spec=TaskSpec(type="noop"), run_id=run,
                                    at=at + int(task_id[1:]) * 1e-3, **A))
    for slot, (task_id, _, _) in enumerate(tasks):
        events.append(TaskLeased(task_id=task_id, worker_id="w1", session="s", attempt=1,
                                 at=float(slot), **A))
        events.append(TaskSucceeded(task_id=task_id, attempt=1, duration_s=1.0,
                                    at=float(slot + 1), **A))
    return list(enumerate(events, 1))


def test_actual_numbers_come_from_the_log() -> None:
    actual = History.from_events(history()).actual()
    assert actual.tasks == 8 and actual.makespan_s == 8.0
    assert actual.fairness < 0.9  # the small run waited behind the huge one


def test_fair_share_is_fairer_than_fifo_on_the_same_history() -> None:
    h = History.from_events(history())
    fifo, fair = simulate(h, FifoPolicy()), simulate(h, DefaultPolicy())
    assert fifo.makespan_s == fair.makespan_s == 8.0  # same work, same single slot
    assert fair.fairness > fifo.fairness
    assert fair.mean_wait_s <= fifo.mean_wait_s
    assert fifo.fairness == h.actual().fairness  # FIFO reproduces what happened


def test_more_workers_shorten_the_makespan() -> None:
    h = History.from_events(history())
    alone, more = simulate(h, FifoPolicy()), simulate(h, FifoPolicy(), extra_workers=3)
    assert alone.makespan_s == 8.0
    assert abs(more.makespan_s - 2.0) < 0.01  # 8 tasks of 1 s on 4 single-slot workers
    assert simulate(h, FifoPolicy(), extra_workers=0) == alone
