"""What the autoscaler reads from its board: the load of its group, and the workers still
starting."""

from __future__ import annotations

from agents.control.scaling import read_load, still_starting
from dtf_core.events.codec import Event
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.worker import WorkerState
from projections.board import Board
from tests.unit.builders import leased, submitted


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


def test_the_load_counts_the_groups_own_leases_and_idle_workers() -> None:
    """A fixed worker busy outside the group asks for no autoscaled worker; the group's idle
    one may go, its busy one may not."""
    def worker(wid: str, group: str) -> WorkerRegistered:
        return WorkerRegistered(worker_id=wid, session="s1", hostname="h", pid=1, slots=1,
                                capabilities=Capabilities(group=group), at=1.0, actor="t")

    events: list[Event] = [worker("local-1", ""), worker("local-auto-1", "local"),
                           worker("local-auto-2", "local"),
                           submitted("t1"), leased("t1", "local-1"),
                           submitted("t2"), leased("t2", "local-auto-2"), submitted("t3")]
    board = Board()
    for seq, ev in enumerate(events, 1):
        board.apply(seq, ev)
    load = read_load(board, "local", now=1100.0, means={}, starting=1, slots=1, draining=set())
    assert (load.queued, load.running, load.workers, load.idle, load.other_free) == \
        (1, 1, 3, ("local-auto-1",), 0)
    assert (load.oldest_wait_s, load.predicted_s) == (100.0, 1.0)
    drained = read_load(board, "local", now=1100.0, means={}, starting=0, slots=1,
                        draining={"local-auto-1"})
    assert (drained.workers, drained.idle) == (1, ())


def test_free_slots_outside_the_group_absorb_only_tasks_that_may_run_there() -> None:
    """A task that requires the group cannot run on a free worker outside it: it still asks
    for a worker of the group (it waited forever before, with nothing scaled up)."""
    from dtf_core.spec import Requirements, TaskSpec

    pinned = TaskSpec(type="noop", requirements=Requirements(worker_group="local"))
    events: list[Event] = [
        WorkerRegistered(worker_id="fixed-1", session="s1", hostname="h", pid=1, slots=2,
                         capabilities=Capabilities(group=""), at=1.0, actor="t"),
        submitted("t1", pinned), submitted("t2")]
    board = Board()
    for seq, ev in enumerate(events, 1):
        board.apply(seq, ev)
    load = read_load(board, "local", now=1100.0, means={}, starting=0, slots=1, draining=set())
    assert (load.queued, load.other_free) == (2, 1)  # t2 may go to fixed-1, t1 may not
    other = read_load(board, "other", now=1100.0, means={}, starting=0, slots=1,
                      draining=set())  # t1 is not this group's to count at all
    assert (other.queued, other.other_free) == (1, 1)
    from dtf_core import autoscale

    decision = autoscale.decide(load, autoscale.Limits(min_workers=0, max_workers=4),
                                now=1100.0, last_up_at=None, last_change_at=None)
    assert (decision.direction, decision.target) == ("up", 1), decision.reason
