"""`dtf audit` and `dtf replay`: the log, read back."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import nats.errors

from agents.wire.output import served_log
from agents.wire.projector import projector_status
from cli.client_cmds import Target, client, connected
from dtf_core import subjects
from dtf_core.audit import verify
from dtf_core.errors import InvalidInput
from dtf_core.events.codec import Event, UndecodableEvent, decode, event_type, to_plain
from dtf_core.ids import validate_id
from dtf_core.replies import Status
from projections.board import Board


async def _events(target: Target, filters: list[str]) -> list[tuple[int, Event]]:
    async with connected(target) as nc:
        records = await served_log(client(nc, target)).read(filters, 1)
    out = []
    for rec in records:
        try:
            out.append((rec.seq, decode(rec.subject, rec.data)))
        except UndecodableEvent:
            continue  # dead-lettered by the agents: not part of the history
    return out


async def history(target: Target, kind: str, ident: str) -> list[dict[str, Any]]:
    """Every event of a task, worker or run (a run: its own events and its tasks'), with
    the actor of each."""
    validate_id(ident, f"{kind} id")
    if kind == "task":
        filters = [subjects.task_filter(ident)]
    elif kind == "worker":
        filters = [subjects.worker_filter(ident), f"dtf.evt.task.*.*.{ident}"]
    else:
        filters = [subjects.run_filter(ident), subjects.TASK_EVENTS]
    events = await _events(target, filters)
    if kind == "run":
        tasks = {getattr(e, "task_id", None) for _, e in events
                 if getattr(e, "run_id", None) == ident}
        events = [(s, e) for s, e in events
                  if getattr(e, "run_id", None) == ident or getattr(e, "task_id", None) in tasks]
    elif kind == "worker":
        events = [(s, e) for s, e in events if getattr(e, "worker_id", None) == ident]
    rows = []
    for seq, ev in events:
        fields = {k: v for k, v in _plain(ev).items() if k not in ("type", "at", "actor", "spec")}
        rows.append({"seq": seq, "at": ev.at, "type": event_type(ev), "actor": ev.actor,
                     "fields": fields})
    return rows


def _plain(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = to_plain(ev)
    return out


async def audit_verify(target: Target) -> dict[str, Any]:
    """Invariants 1, 2, 3, 5, 6 over the whole log; 4 by rebuilding the projection; 7 by
    comparing the live api's state, and the newest snapshot plus the tail, with a replay."""
    live = await _live_status(target)  # first: the log read next covers its position
    events = await _events(target, list(subjects.STATE_EVENTS))
    audit = verify(events)
    result: dict[str, Any] = {
        "events": audit.events, "tasks": audit.tasks, "open_tasks": audit.open_tasks,
        "violations": [asdict(v) for v in audit.violations],
        "projection": await _projection_check(target),
        "live_state": _live_state_check(live, events),
        "snapshot": await _snapshot_check(target, events),
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


def _hash_until(events: list[tuple[int, Event]], last_seq: int,
                board: Board | None = None, after: int = 0) -> str:
    board = board or Board()
    for seq, ev in events:
        if seq > last_seq:
            break
        if seq > after:
            board.apply(seq, ev)
    return board.state_hash()


async def _live_status(target: Target) -> Status | str:
    """The api's status with its state hash, or why there is none."""
    from agents.wire.client import ApiClient

    async with connected(target) as nc:
        try:
            return await ApiClient(nc, credential=target.credential).status(state_hash=True)
        except Exception as exc:  # no api running: say so, do not guess
            return f"no api answered ({type(exc).__name__}: {exc})"


def _live_state_check(live: Status | str, events: list[tuple[int, Event]]) -> dict[str, Any]:
    if isinstance(live, str) or not isinstance(live.state_hash, str):
        why = live if isinstance(live, str) else "no state hash"
        if "behind its own writes" in why:  # a fold that stopped: a violation, not a gap
            return {"checked": True, "equal": False, "last_seq": -1, "why": why}
        return {"checked": False, "why": why}
    return {"checked": True, "equal": _hash_until(events, live.last_seq) == live.state_hash,
            "last_seq": live.last_seq}


async def _snapshot_check(target: Target, events: list[tuple[int, Event]]) -> dict[str, Any]:
    from agents.log import snapshots

    board = Board()
    async with connected(target) as nc:
        position = await snapshots.load_into(nc.jetstream(), board)
    if position == 0:
        return {"checked": False, "why": "no snapshot stored"}
    last = events[-1][0] if events else 0
    whole = _hash_until(events, last)
    return {"checked": True, "equal": _hash_until(events, last, board, position) == whole,
            "last_seq": last, "snapshot_seq": position}


async def _projection_check(target: Target) -> dict[str, Any]:
    from agents.control.projector import rebuild

    async with connected(target) as nc:
        try:
            live = await projector_status(nc, "hash", timeout=10)
        except (nats.errors.Error, msgspec.DecodeError) as exc:  # say so, do not guess
            return {"checked": False, "why": f"no projector answered ({type(exc).__name__})"}
        if not isinstance(live.hash, str) or not isinstance(live.last_seq, int):
            return {"checked": False, "why": str(live.error or live)}
        with tempfile.TemporaryDirectory(prefix="dtf-audit-") as tmp:
            rebuilt = await rebuild(served_log(client(nc, target)), Path(tmp) / "rebuilt.duckdb",
                                    until_seq=live.last_seq)
    return {"checked": True, "equal": rebuilt == live.hash, "last_seq": live.last_seq}


def parse_at(text: str) -> tuple[str, float]:
    """``--at``: a stream sequence (an integer), or a time (ISO 8601, or Unix seconds)."""
    if text.isdigit():
        return "seq", float(text)
    try:
        return "time", float(text)
    except ValueError:
        pass
    try:
        return "time", datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InvalidInput(f"invalid --at {text!r}: a sequence number, Unix seconds or an "
                           "ISO time such as 2026-11-27T08:00:00+00:00") from None


async def replay(target: Target, at: str) -> dict[str, Any]:
    """The folded state (tasks, workers, runs) as of a sequence or a time."""
    kind, value = parse_at(at)
    board = Board()
    last = 0
    for seq, ev in await _events(target, list(subjects.STATE_EVENTS)):
        if (kind == "seq" and seq > value) or (kind == "time" and ev.at > value):
            break
        board.apply(seq, ev)
        last = seq
    tasks = {status: n for status, n in sorted(board.counts.items()) if n}
    return {
        "at": at, "seq": last, "state_hash": board.state_hash(),
        "tasks": tasks, "runs": len(board.runs),
        "workers": {w.worker_id: {"status": w.status, "scheduling": w.scheduling,
                                  "slots": w.slots,
                                  "leases": sorted(board.leases_by_worker.get(w.worker_id, ()))}
                    for w in board.workers.values()},
        "queued": sorted(t.task_id for t in board.tasks.values() if t.status == "queued"),
        "live": {t.task_id: t.worker_id for t in board.tasks.values() if t.live},
    }
