"""A writer's fold takes its own appends back from memory instead of decoding them again:
given events this process committed, when its tail delivers them, then the board and the
listeners see the committed events themselves, and other writers' events as decoded."""

from __future__ import annotations

import pytest

from agents.control.base import log_only
from agents.log.commit import commit, task_change
from agents.log.fold import Folder
from agents.log.memory import MemoryLog
from agents.log.own import OwnEvents
from dtf_core.events.codec import Event
from projections.board import Board
from tests.unit.builders import submitted

pytestmark = pytest.mark.anyio


class Seen:
    def __init__(self) -> None:
        self.batches: list[list[tuple[int, Event]]] = []

    async def __call__(self, events: list[tuple[int, Event]]) -> None:
        self.batches.append(events)


async def folded(folder: Folder, log: MemoryLog) -> None:
    await folder.fold(await log.read(folder.filters, folder.position + 1))


async def test_own_appends_come_back_as_the_committed_objects() -> None:
    log = MemoryLog()
    seen = Seen()
    folder = Folder(log, Board(), dead_letter=log_only, on_batch=seen)
    mine = submitted("t1")
    [seqs] = await commit(log, folder.board, [task_change(folder.board, "t1", [mine])],
                          folder.own)
    assert seqs is not None and len(folder.own) == 1
    await folded(folder, log)
    [[(seq, event)]] = seen.batches
    assert seq == seqs[0]
    assert event is mine  # not a decoded copy
    assert len(folder.own) == 0
    assert folder.position == seq and folder.board.tasks["t1"].last_seq == seq


async def test_another_writers_events_are_decoded_and_folded() -> None:
    log = MemoryLog()
    seen = Seen()
    folder = Folder(log, Board(), dead_letter=log_only, on_batch=seen)
    other = Board()
    theirs = submitted("t2")
    await commit(log, other, [task_change(other, "t2", [theirs])])  # no own: another process
    await folded(folder, log)
    [[(_, event)]] = seen.batches
    assert event == theirs and event is not theirs
    assert "t2" in folder.board.tasks


async def test_a_duplicate_append_is_not_kept() -> None:
    log = MemoryLog()
    folder = Folder(log, Board(), dead_letter=log_only)
    first = submitted("t3")
    await commit(log, Board(), [task_change(Board(), "t3", [first])])
    await commit(log, folder.board, [task_change(Board(), "t3", [first])], folder.own)
    assert len(folder.own) == 0  # the log kept its first copy, which the fold decodes


def test_what_the_fold_passed_is_dropped() -> None:
    own = OwnEvents()
    for seq in (5, 7, 9):
        own.note(seq, submitted(f"t{seq}"))
    own.passed(7)  # 5 and 7 never came back (outside the fold's filters)
    assert len(own) == 1 and own.take(9) is not None
    own.note(6, submitted("t6"))  # folded before its PubAck was read: not kept
    assert len(own) == 0
