"""The board: a pure fold of the log with the indices the agents use."""

from __future__ import annotations

from msgspec import structs

from dtf_core.events.codec import Event
from dtf_core.events.run import RunCreated
from dtf_core.events.task import TaskRequeued, TaskStarted, TaskSucceeded
from dtf_core.events.worker import Capabilities, WorkerRegistered, WorkerStopped
from projections.board import Board
from tests.unit.builders import ACTOR, leased, spec, submitted

WORKER = WorkerRegistered(worker_id="w1", session="s1", hostname="h", pid=1, slots=2,
                          capabilities=Capabilities(cpu_count=2), at=1.0, actor="w1")
RUN = RunCreated(run_id="r1", task_ids=("t1", "t2"), at=1.0, actor=ACTOR)


def done(task_id: str, fencing: int, worker: str = "w1") -> TaskSucceeded:
    return TaskSucceeded(task_id=task_id, attempt=1, fencing=fencing, worker_id=worker,
                         exit_code=0, at=9.0, actor=ACTOR)


LOG: list[Event] = [
    WORKER,                                   # 1
    RUN,                                      # 2
    submitted("t1"),                          # 3
    submitted("t2", spec(deps=("t1",))),      # 4
    leased("t1"),                             # 5
    TaskStarted(task_id="t1", attempt=1, fencing=5, worker_id="w1", at=3.0, actor=ACTOR),  # 6
    leased("t2", worker="w2"),                # 7
    done("t1", 5),                            # 8
]


def folded(log: list[Event]) -> Board:
    board = Board()
    for seq, event in enumerate(log, start=1):
        board.apply(seq, event)
    return board


def test_fold_builds_tasks_workers_and_runs() -> None:
    board = folded(LOG)
    assert board.last_seq == 8
    assert board.tasks["t1"].status == "succeeded"
    assert board.tasks["t2"].status == "leased"
    assert board.workers["w1"].status == "alive"
    assert board.runs["r1"] == RUN
    assert board.dependents == {"t1": {"t2"}}
    assert board.counts.get("succeeded") == 1 and board.counts.get("leased") == 1
    assert board.counts.get("queued") == 0 and board.counts.get("running") == 0


def test_leases_by_worker_follows_the_live_leases() -> None:
    board = folded(LOG[:6])
    assert board.leases_by_worker["w1"] == {"t1"}
    assert sorted(board.leases_by_worker.get("w1", ())) == ["t1"]
    board.apply(7, LOG[6])
    assert board.leases_by_worker["w2"] == {"t2"}
    board.apply(8, LOG[7])
    assert not board.leases_by_worker.get("w1")
    assert not board.leases_by_worker.get("nobody")
    board.apply(9, TaskRequeued(task_id="t2", attempt=1, fencing=7, worker_id="w2",
                                reason="lost", at=9.0, actor=ACTOR))
    assert not board.leases_by_worker.get("w2")


def test_the_same_log_folds_to_the_same_hash() -> None:
    assert folded(LOG).state_hash() == folded(list(LOG)).state_hash()


def test_a_different_event_gives_a_different_hash() -> None:
    changed = [*LOG[:-1], structs.replace(done("t1", 5), exit_code=1)]
    assert folded(changed).state_hash() != folded(LOG).state_hash()


def test_a_missing_event_gives_a_different_hash() -> None:
    assert folded(LOG[:-1]).state_hash() != folded(LOG).state_hash()


def test_reapplying_a_sequence_is_a_no_op() -> None:
    board = folded(LOG)
    before = (board.state_hash(), dict(board.counts),
              {w: set(t) for w, t in board.leases_by_worker.items()})
    for seq, event in enumerate(LOG, start=1):
        assert board.apply(seq, event) is None
    assert (board.state_hash(), dict(board.counts),
            {w: set(t) for w, t in board.leases_by_worker.items()}) == before
    assert board.last_seq == 8


def test_a_worker_event_returns_the_changed_worker() -> None:
    board = folded(LOG)
    changed = board.apply(9, WorkerStopped(worker_id="w1", session="s1", at=5.0, actor="w1"))
    assert changed is board.workers["w1"]
    assert changed.status == "stopped"


def test_an_event_for_an_unknown_task_is_skipped() -> None:
    board = Board()
    assert board.apply(1, leased("ghost")) is None
    assert board.tasks == {} and board.leases_by_worker == {}
    assert board.last_seq == 1
