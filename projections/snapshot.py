"""Snapshots of the board: its folded state and the log position it includes.

A cold start loads the newest snapshot and folds only the tail after ``position``; the
result equals a fold of the whole log (``tests/unit/test_snapshot.py`` checks it event by
event, ``dtf audit verify`` on a live log). The indices (counts, leases by worker,
dependents) are rebuilt on load rather than stored: they are derived, so they cannot
disagree with the tasks. A snapshot of another ``VERSION`` is ignored (a full replay
follows), never half-read.
"""

from __future__ import annotations

import msgspec

from dtf_core.events.auth import ApiKeyCreated, TokenIssued, TokenRevoked
from dtf_core.events.lead import LeadershipClaimed
from dtf_core.events.run import RunCreated
from dtf_core.events.scale import ScaleEvent
from dtf_core.task import TERMINAL, TaskState
from dtf_core.worker import WorkerState
from projections.board import Board, note_scale

VERSION = 3  # 2: compacted tasks (``finished``); 3: their ids grouped by status


class AuthPart(msgspec.Struct, frozen=True):
    issued: list[TokenIssued]
    revoked: list[TokenRevoked]
    api_keys: list[ApiKeyCreated]
    revoked_keys: list[str]
    public_keys: dict[str, bytes]
    retired_keys: list[str]


class BoardSnapshot(msgspec.Struct, frozen=True):
    version: int
    position: int  # every event up to this sequence is folded in
    last_seq: int
    tasks: list[TaskState]
    workers: list[WorkerState]
    runs: list[RunCreated]
    auth: AuthPart
    leaders: list[LeadershipClaimed]
    lead_seq: dict[str, int]
    # compacted tasks: final status -> their ids, one per line. They are most of the tasks
    # ever submitted; one string per status decodes many times faster than a map of ids.
    finished: dict[str, str]
    strays: dict[str, int] = {}  # Board.strays (absent from older snapshots)
    scaling: list[ScaleEvent] = []  # Board.scaling, oldest first (absent from older ones)


class _Version(msgspec.Struct):
    version: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BoardSnapshot)
_version = msgspec.msgpack.Decoder(_Version)  # read first: another layout may not decode


class SnapshotMismatch(ValueError):
    """Not a snapshot this version of DTF can load."""


def encode(board: Board, position: int) -> bytes:
    return encode_captured(capture(board, position))


class Captured(msgspec.Struct, frozen=True):
    snap: BoardSnapshot  # without ``finished``
    finished: dict[str, str]  # a copy of the board's: id -> final status


def encode_captured(captured: Captured) -> bytes:
    """The slow half, safe in a thread: a capture shares only immutable structs."""
    by_status: dict[str, list[str]] = {}
    for task_id, status in captured.finished.items():
        by_status.setdefault(status, []).append(task_id)
    grouped = {status: "\n".join(ids) for status, ids in sorted(by_status.items())}
    return _encoder.encode(msgspec.structs.replace(captured.snap, finished=grouped))


def capture(board: Board, position: int) -> Captured:
    """The fast half, on the loop that owns the board: copies of its containers."""
    if board.from_leases:
        raise ValueError("only a full board (not recovery's lease-only one) is snapshotted")
    a = board.auth
    return Captured(BoardSnapshot(
        version=VERSION, position=position, last_seq=board.last_seq,
        tasks=list(board.tasks.values()), workers=list(board.workers.values()),
        runs=list(board.runs.values()),
        auth=AuthPart(issued=list(a.issued.values()), revoked=list(a.revoked.values()),
                      api_keys=list(a.api_keys.values()), revoked_keys=sorted(a.revoked_keys),
                      public_keys=dict(a.public_keys), retired_keys=sorted(a.retired_keys)),
        leaders=list(board.leaders.values()), lead_seq=dict(board.lead_seq), finished={},
        strays=dict(board.strays),
        scaling=[e for recent in board.scaling.values() for e in recent],
    ), dict(board.finished))


def decode(data: bytes) -> tuple[Board, int]:
    """The board and its position; SnapshotMismatch for another version or a bad blob."""
    board = Board()
    return board, restore(board, data)


def restore(board: Board, data: bytes) -> int:
    """Load ``data`` into an empty ``board`` (agents hold references to theirs); returns the
    position it includes."""
    if board.last_seq or board.tasks:
        raise ValueError("a snapshot is restored into an empty board only")
    try:
        version = _version.decode(data).version
        if version != VERSION:
            raise SnapshotMismatch(f"snapshot version {version}, this DTF reads {VERSION}")
        snap = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotMismatch(f"not a DTF v{VERSION} board snapshot: {exc}") from None
    board.last_seq = snap.last_seq
    for t in sorted(snap.tasks, key=lambda t: t.last_seq):  # the board's order: see Board
        board.tasks[t.task_id] = t
        board._index(None, t)
    board.workers = {w.worker_id: w for w in snap.workers}
    board.runs = {r.run_id: r for r in snap.runs}
    a = board.auth
    a.issued = {e.auth_id: e for e in snap.auth.issued}
    a.revoked = {e.auth_id: e for e in snap.auth.revoked}
    a.api_keys = {e.auth_id: e for e in snap.auth.api_keys}
    a.revoked_keys = set(snap.auth.revoked_keys)
    a.public_keys = dict(snap.auth.public_keys)
    a.retired_keys = set(snap.auth.retired_keys)
    board.leaders = {c.role: c for c in snap.leaders}
    board.lead_seq = dict(snap.lead_seq)
    board.strays = dict(snap.strays)
    for ev in snap.scaling:
        note_scale(board.scaling, ev)
    for status, ids in snap.finished.items():
        if ids:
            board.finished.update(dict.fromkeys(ids.split("\n"), status))
    board.ended = sorted((t.last_seq, t.task_id) for t in snap.tasks  # a sorted list is a heap
                         if t.status in TERMINAL)
    return snap.position
