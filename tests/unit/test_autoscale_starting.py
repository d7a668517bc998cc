"""Given workers asked for, when some register, then they no longer count as starting."""

from __future__ import annotations

from agents.control.scaling import still_starting
from dtf_core.worker import WorkerState


def w(wid: str, at: float) -> WorkerState:
    return WorkerState(worker_id=wid, session="s", registered_at=at)


def test_named_workers_leave_when_they_register_or_time_out() -> None:
    starting = {"g-auto-1": 160.0, "g-auto-2": 160.0, "g-auto-3": 90.0}
    assert still_starting(starting, [w("g-auto-1", 101.0)], now=100.0) == {"g-auto-2": 160.0}


def test_unnamed_workers_are_matched_by_count_of_new_registrations() -> None:
    starting = {"?100.5-0": 160.0, "?100.5-1": 160.0, "?100.5-2": 160.0}
    group = [w("old-pod", 50.0), w("pod-a", 101.0), w("pod-b", 102.0)]
    assert still_starting(starting, group, now=103.0) == {"?100.5-2": 160.0}
    assert still_starting(starting, group[:1], now=103.0) == starting
