"""Compaction: a task that ended more than K events ago leaves the board and keeps only
its final status. The rule depends on log positions only, so any fold of the same log, in
order or with an agent's own appends applied early, compacts the same tasks."""

from __future__ import annotations

import pytest

from dtf_core.events.codec import Event
from dtf_core.events.task import ResultRefused, TaskFailed, TaskSucceeded
from projections import snapshot
from projections.board import Board
from tests.unit.builders import ACTOR, leased, spec, submitted

K = 4


def done(task_id: str, fencing: int) -> TaskSucceeded:
    return TaskSucceeded(task_id=task_id, attempt=1, fencing=fencing, worker_id="w1",
                         at=9.0, actor=ACTOR)


LOG: list[Event] = [
    submitted("a"),                      # 1
    leased("a"),                         # 2
    done("a", 2),                        # 3  a ends at 3
    submitted("b", spec(deps=("a",))),   # 4
    submitted("c"),                      # 5
    leased("c"),                         # 6
    TaskFailed(task_id="c", attempt=1, fencing=6, worker_id="w1", error="boom", at=9.0,
               actor=ACTOR),             # 7  a compacted here (3 <= 7 - 4); c ends at 7
    leased("b"),                         # 8
    done("b", 8),                        # 9
    submitted("d"),                      # 10
    submitted("e"),                      # 11 c compacted (7 <= 11 - 4)
    ResultRefused(task_id="a", fencing=2, worker_id="w1", outcome="succeeded",
                  reason="late", at=9.5, actor=ACTOR),  # 12 late, for a compacted task
    submitted("a"),                      # 13 a resubmission of a compacted id: no effect
    submitted("f"),                      # 14 b compacted (9 <= 14 - 4)
]


def fold(events: list[Event], order: list[int] | None = None) -> Board:
    board = Board(compact_after=K)
    for i in order or range(len(events)):
        board.apply(i + 1, events[i])
    return board


def test_ended_tasks_leave_the_board_and_keep_their_status() -> None:
    board = fold(LOG)
    assert board.finished == {"a": "succeeded", "c": "failed", "b": "succeeded"}
    assert sorted(board.tasks) == ["d", "e", "f"]
    assert board.counts["succeeded"] == 2 and board.counts["failed"] == 1
    assert board.counts["queued"] == 3
    assert "a" not in board.dependents
    tomb = board.task_or_tombstone("a")
    assert tomb is not None and tomb.status == "succeeded" and tomb.terminal
    assert board.task_or_tombstone("nope") is None and not board.known("nope")


def test_a_fold_with_early_own_appends_compacts_the_same_tasks() -> None:
    in_order = fold(LOG)
    # an agent applies its own append (seq 9) before the fold delivers seqs 7 and 8
    early = fold(LOG, order=[0, 1, 2, 3, 4, 5, 8, 6, 7, *range(9, len(LOG))])
    assert early.state_hash() == in_order.state_hash()
    assert early.finished == in_order.finished


@pytest.mark.parametrize("cut", range(len(LOG) + 1))
def test_a_snapshot_of_a_compacted_board_then_the_tail_equals_the_whole_fold(cut: int) -> None:
    board = Board(compact_after=K)
    data = snapshot.encode(fold(LOG[:cut]), cut)
    position = snapshot.restore(board, data)
    for seq, event in enumerate(LOG[position:], start=position + 1):
        board.apply(seq, event)
    assert board.state_hash() == fold(LOG).state_hash()
    assert board.finished == fold(LOG).finished


def test_without_compaction_every_task_stays() -> None:
    board = Board(compact_after=None)
    for seq, event in enumerate(LOG, start=1):
        board.apply(seq, event)
    assert board.finished == {} and len(board.tasks) == 6
