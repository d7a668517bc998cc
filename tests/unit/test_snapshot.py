"""Snapshots: a board loaded from a snapshot and folded on from its position equals the
board folded from the whole log, at every cut point."""

from __future__ import annotations

import msgspec
import pytest

from dtf_core.events.auth import SigningKeyAdded, TokenIssued, TokenRevoked
from dtf_core.events.codec import Event
from dtf_core.events.lead import LeadershipClaimed
from dtf_core.events.task import TaskRequeued, TaskStarted
from dtf_core.events.worker import WorkerLost
from projections import snapshot
from projections.board import Board
from tests.unit.builders import ACTOR, leased, spec, submitted
from tests.unit.test_board import LOG, RUN, WORKER, done, folded

MORE: list[Event] = [
    *LOG,
    TokenIssued(auth_id="j1", sub="alice", role="admin", exp=99.0, at=1.0, actor=ACTOR),
    TokenRevoked(auth_id="j1", reason="left", at=2.0, actor=ACTOR),
    SigningKeyAdded(auth_id="k1", public_key=b"\x01\x02", at=1.0, actor=ACTOR),
    LeadershipClaimed(role="scheduler", holder="s@h:1:a", term=1, expires_at=5.0, at=1.0,
                      actor="s@h:1:a"),
    submitted("t3", spec(deps=("t2",))),
    leased("t3", worker="w1"),
    TaskStarted(task_id="t3", attempt=1, fencing=14, worker_id="w1", at=3.0, actor=ACTOR),
    WorkerLost(worker_id="w2", session="s2", last_seen=3.0, reason="no heartbeat",
               at=4.0, actor=ACTOR),
    TaskRequeued(task_id="t2", attempt=1, fencing=7, worker_id="w2", reason="worker lost",
                 at=4.0, actor=ACTOR),
    LeadershipClaimed(role="scheduler", holder="s@h:2:b", term=2, expires_at=9.0, at=6.0,
                      actor="s@h:2:b"),
    done("t3", 14),
]


def indices(board: Board) -> tuple[object, ...]:
    return ({k: v for k, v in board.counts.items() if v},
            {k: v for k, v in board.leases_by_worker.items() if v},
            board.dependents, board.leaders, board.lead_seq, board.last_seq)


@pytest.mark.parametrize("cut", range(len(MORE) + 1))
def test_snapshot_then_tail_equals_the_whole_fold(cut: int) -> None:
    whole = folded(MORE)
    board, position = snapshot.decode(snapshot.encode(folded(MORE[:cut]), cut))
    assert position == cut
    for seq, event in enumerate(MORE[cut:], start=cut + 1):
        board.apply(seq, event)
    assert board.state_hash() == whole.state_hash()
    assert indices(board) == indices(whole)
    assert board.auth.is_revoked("j1") and board.auth.public_keys == {"k1": b"\x01\x02"}


def test_another_version_or_garbage_is_refused_not_half_read() -> None:
    data = snapshot.encode(folded([WORKER, RUN]), 2)
    raw = msgspec.msgpack.decode(data)
    raw["version"] = snapshot.VERSION + 1
    with pytest.raises(snapshot.SnapshotMismatch, match="version"):
        snapshot.decode(msgspec.msgpack.encode(raw))
    with pytest.raises(snapshot.SnapshotMismatch):
        snapshot.decode(b"\x93garbage")


def test_a_lease_only_board_is_not_snapshotted() -> None:
    with pytest.raises(ValueError, match="full board"):
        snapshot.encode(Board(from_leases=True), 0)


def test_strays_survive_a_snapshot() -> None:
    from projections.board import Board
    from projections.snapshot import decode, encode

    board = Board()
    board.note_stray(5, "dtf.evt.task.t1.started")
    restored, _ = decode(encode(board, 5))
    assert restored.expect("task", "t1", 0) == 5
