"""`dtf audit verify`: the invariants over the whole log, in one pass.

The log is read once, as it streams in (the server sends while this folds), and each
event is decoded once. One board, the rebuilt projection's, folds everything: it gives the
state hash where the api's fold stood (invariant 7, live state) and at the end; the
invariants 1, 2, 3, 5, 6 are checked event by event; the rebuilt projection stops at the
live projector's position and compares hashes (4); the newest snapshot plus the events
after it must hash as the whole log does (7).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import msgspec
import nats.errors

from agents.control.projector import fold_event
from agents.control.rebuild import Rebuild
from agents.log.port import EventLog
from agents.wire.output import served_log
from agents.wire.projector import projector_status
from cli.client_cmds import Target, client, connected
from dtf_core import subjects
from dtf_core.audit import Verifier
from dtf_core.events.codec import Event, UndecodableEvent, decode
from dtf_core.replies import ProjectorStatus, Status
from projections.board import Board
from projections.reads import hash_engine

STATE_PREFIXES = tuple(f.removesuffix(">") for f in subjects.STATE_EVENTS)


class _Pass:
    """What the one pass over the log keeps."""

    def __init__(self, rebuild: Rebuild, live_seq: int | None, snapshot: Board | None,
                 snapshot_seq: int) -> None:
        self.rebuild = rebuild
        self.verifier = Verifier()
        self.live_seq = live_seq
        self.live_hash: str | None = None
        self.snapshot = snapshot
        self.snapshot_seq = snapshot_seq
        self.last_state_seq = 0
        self.folded = 0  # the last record folded into the rebuild's board

    async def feed(self, records: list[Any]) -> None:
        """Decode each record once and hand it to each check, in one loop (this runs a
        million times: locals, no per-record lists)."""
        rebuild = self.rebuild
        writer, until = rebuild.writer, rebuild.until
        board = writer.board
        verify = self.verifier.feed
        snapshot, snapshot_seq = self.snapshot, self.snapshot_seq
        live = self.live_seq if self.live_hash is None else None
        folded, last_state, projected = self.folded, self.last_state_seq, 0
        for rec in records:
            seq, subject = rec.seq, rec.subject
            try:
                ev: Event | None = decode(subject, rec.data)
            except UndecodableEvent:
                ev = None  # dead-lettered: not part of the history
            if seq > folded:
                if live is not None and seq > live:
                    self.live_hash = board.state_hash()  # where the api's fold stood
                    live = None
                if seq <= until:  # up to the projector's position: rows too
                    projected += 1
                    if ev is None:
                        writer.skip(seq)
                    else:
                        fold_event(writer, seq, ev)
                elif ev is not None:
                    board.apply(seq, ev)  # past it: the board only
                folded = seq
            if ev is None or not subject.startswith(STATE_PREFIXES):
                continue
            verify(seq, ev)
            last_state = seq
            if snapshot is not None and seq > snapshot_seq:
                snapshot.apply(seq, ev)
        self.folded, self.last_state_seq = folded, last_state
        await rebuild.counted(projected)

    def end_hash(self) -> str:
        if self.live_seq is not None and self.live_hash is None:
            self.live_hash = self.rebuild.board.state_hash()
        return self.rebuild.board.state_hash()


async def audit_verify(target: Target) -> dict[str, Any]:
    """Invariants 1, 2, 3, 5, 6 over the whole log; 4 by rebuilding the projection; 7 by
    comparing the live api's state, and the newest snapshot plus the tail, with a replay."""
    from agents.log import snapshots

    live = await _live_status(target)  # first: the log read next covers its position
    async with connected(target) as nc:
        snapshot = Board()
        projected, snapshot_seq = await asyncio.gather(  # the projector hashes meanwhile
            _live_projection(nc), snapshots.load_into(nc.jetstream(), snapshot))
        live_seq = live.last_seq if isinstance(live, Status) and isinstance(
            live.state_hash, str) else None
        until = projected.last_seq if isinstance(projected, ProjectorStatus) else 0
        rebuild = Rebuild(None, until or 0)  # in memory: only its hash is wanted
        await rebuild.open()
        try:
            state = _Pass(rebuild, live_seq, snapshot if snapshot_seq else None,
                          snapshot_seq)
            with _no_cyclic_gc():  # a million objects made, none in a cycle
                await _read_all(served_log(client(nc, target)), state)
                rebuilt = await rebuild.finish()  # and a million rows
        finally:
            await rebuild.close()
    whole = state.end_hash()
    audit = state.verifier.result()
    result: dict[str, Any] = {
        "events": audit.events, "tasks": audit.tasks, "open_tasks": audit.open_tasks,
        "violations": [asdict(v) for v in audit.violations],
        "projection": (_projection_check(projected, rebuilt)),
        "live_state": _live_state_check(live, state.live_hash),
        "snapshot": ({"checked": False, "why": "no snapshot stored"} if not snapshot_seq else
                     {"checked": True, "equal": snapshot.state_hash() == whole,
                      "last_seq": state.last_state_seq, "snapshot_seq": snapshot_seq}),
    }
    checks = (("projection", 4, "the live projection differs from a rebuild"),
              ("live_state", 7, "the api's folded state differs from a replay of the log"),
              ("snapshot", 7, "the newest snapshot plus the tail differs from a replay"))
    for key, invariant, detail in checks:
        if result[key].get("equal") is False:
            result["violations"].append({"invariant": invariant,
                                         "seq": result[key]["last_seq"],
                                         "subject_id": key, "detail": detail})
    result["clean"] = not result["violations"]
    return result


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _read_all(log: EventLog, state: _Pass) -> None:
    async with log.tail([subjects.ALL_EVENTS], 1) as tail:
        if await tail.empty():
            return
        async for batch in tail:
            await state.feed(batch)
            if tail.pending == 0:
                return


async def _live_status(target: Target) -> Status | str:
    """The api's status with its state hash, or why there is none."""
    from agents.wire.client import ApiClient

    async with connected(target) as nc:
        try:
            return await ApiClient(nc, credential=target.credential).status(state_hash=True)
        except Exception as exc:  # no api running: say so, do not guess
            return f"no api answered ({type(exc).__name__}: {exc})"


async def _live_projection(nc: Any) -> ProjectorStatus | str:
    try:
        live = await projector_status(nc, "hash", timeout=10)
    except (nats.errors.Error, msgspec.DecodeError) as exc:  # say so, do not guess
        return f"no projector answered ({type(exc).__name__})"
    if not isinstance(live.hash, str) or not isinstance(live.last_seq, int):
        return str(live.error or live)
    return live


def _projection_check(live: ProjectorStatus | str, rebuilt: str) -> dict[str, Any]:
    if isinstance(live, str):
        return {"checked": False, "why": live}
    theirs, ours = hash_engine(str(live.hash)), hash_engine(rebuilt)
    if theirs != ours:  # another version may print a row's values otherwise
        return {"checked": False, "why": f"the projector hashes with {theirs}, this CLI with "
                f"{ours}: run `dtf audit verify` with the projector's DuckDB version"}
    return {"checked": True, "equal": rebuilt == live.hash, "last_seq": live.last_seq}


def _live_state_check(live: Status | str, replayed: str | None) -> dict[str, Any]:
    if isinstance(live, str) or not isinstance(live.state_hash, str):
        why = live if isinstance(live, str) else "no state hash"
        if "behind its own writes" in why:  # a fold that stopped: a violation, not a gap
            return {"checked": True, "equal": False, "last_seq": -1, "why": why}
        return {"checked": False, "why": why}
    return {"checked": True, "equal": replayed == live.state_hash, "last_seq": live.last_seq}
