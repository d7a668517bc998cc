"""Committing decisions: append each aggregate's events with its optimistic-concurrency
check, then fold what the log acknowledged into the writer's board at once.

Every agent that decides writes through ``commit``: the scheduler's leases, recovery's
requeues and the api's commands. A change the log refused (someone wrote the aggregate
first) is left out of the board; the writer's fold brings the winner's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.log.appender import append_groups
from agents.log.own import OwnEvents
from agents.log.port import Append, Appended, EventLog
from dtf_core import subjects
from dtf_core.events.codec import Event, encode, msg_id_of, subject_of
from projections.board import Board


@dataclass
class Change:
    """The events of one aggregate, appended together; the first carries the check that
    the aggregate's last sequence is still ``expect_seq`` (on ``expect_filter``)."""

    events: list[Event]
    expect_seq: int | None
    expect_filter: str | None

    def appends(self) -> list[Append]:
        out: list[Append] = []
        for i, ev in enumerate(self.events):
            out.append(
                Append(
                    subject=subject_of(ev),
                    data=encode(ev),
                    msg_id=msg_id_of(ev),
                    expect_seq=self.expect_seq if i == 0 else None,
                    expect_filter=self.expect_filter if i == 0 else None,
                )
            )
        return out



def task_change(board: Board, task_id: str, events: Sequence[Event]) -> Change:
    state = board.tasks.get(task_id)
    folded = state.last_seq if state else 0
    return Change(list(events), board.expect("task", task_id, folded),
                  subjects.task_filter(task_id))


def worker_change(board: Board, worker_id: str, events: Sequence[Event]) -> Change:
    state = board.workers.get(worker_id)
    folded = state.last_seq if state else 0
    return Change(list(events), board.expect("worker", worker_id, folded),
                  subjects.worker_filter(worker_id))


async def commit(log: EventLog, board: Board, changes: Sequence[Change],
                 own: OwnEvents | None = None) -> list[Appended | None]:
    """Append every change and apply the acknowledged ones to ``board``, in order.

    Returns each change's sequences, or None where the log refused it for a conflict. An
    event the log held already (a resend: ``Appended.duplicates``) is not applied: the log
    keeps its first copy, which the fold brings."""
    results = await append_groups(log, [c.appends() for c in changes])
    _apply(board, changes, results, own)
    return results


def _apply(board: Board, changes: Sequence[Change], results: Sequence[Appended | None],
           own: OwnEvents | None) -> None:
    for change, seqs in zip(changes, results, strict=True):
        if seqs is not None:
            for seq, event in zip(seqs, change.events, strict=True):
                if seq not in seqs.duplicates:
                    board.apply(seq, event)
                    if own is not None:
                        own.note(seq, event)
