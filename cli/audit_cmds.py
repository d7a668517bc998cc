"""`dtf audit` and `dtf replay`: the log, read back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.log.port import EventLog
from agents.wire.output import served_log
from cli.client_cmds import Target, client, connected
from dtf_core import subjects
from dtf_core.errors import InvalidInput
from dtf_core.events.codec import (
    Event,
    UndecodableEvent,
    decode,
    event_type,
    to_plain,
    unpacked,
)
from dtf_core.ids import validate_id
from projections.board import Board


async def _events(target: Target, filters: list[str]) -> list[tuple[int, Event]]:
    """The events as users know them: a lease that is also the submission is shown as
    both (ADR 0018)."""
    async with connected(target) as nc:
        records = await served_log(client(nc, target)).read(filters, 1)
    out: list[tuple[int, Event]] = []
    for rec in records:
        try:
            event = decode(rec.subject, rec.data)
        except UndecodableEvent:
            continue  # dead-lettered by the agents: not part of the history
        out.extend((rec.seq, e) for e in unpacked(event))
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


async def _fold_until(log: EventLog, nc: Any, kind: str, value: float, snapshot: bool
                      ) -> tuple[Board, int, int]:
    """The board as of a sequence or a time, the last sequence folded into it and the
    snapshot's position it started from (0: the first event). A sequence at or after the
    newest snapshot's starts from the snapshot (a time does not: an earlier event may carry
    a later time, and the fold stops at the first that does)."""
    from agents.log import snapshots

    board, last = Board(), 0
    if kind == "seq" and snapshot:
        stored = Board()
        position = await snapshots.load_into(nc.jetstream(), stored)
        if 0 < position <= value:
            board, last = stored, position
    start = last
    if kind == "seq" and last >= value:
        return board, last, start
    async with log.tail(list(subjects.STATE_EVENTS), last + 1) as tail:
        if await tail.empty():
            return board, last, start
        async for batch in tail:
            for rec in batch:
                try:
                    ev = decode(rec.subject, rec.data)
                except UndecodableEvent:
                    continue  # dead-lettered by the agents: not part of the history
                if (kind == "seq" and rec.seq > value) or (kind == "time" and ev.at > value):
                    return board, last, start
                board.apply(rec.seq, ev)
                last = rec.seq
            if tail.pending == 0:
                return board, last, start
    return board, last, start


async def replay(target: Target, at: str, snapshot: bool = True) -> dict[str, Any]:
    """The folded state (tasks, workers, runs) as of a sequence or a time; from the newest
    snapshot where it is at or before a sequence asked for (``snapshot_seq``), unless
    ``snapshot`` is False (`dtf audit verify` checks the snapshot against the log)."""
    kind, value = parse_at(at)
    async with connected(target) as nc:
        board, last, start = await _fold_until(served_log(client(nc, target)), nc, kind,
                                               value, snapshot)
    tasks = {status: n for status, n in sorted(board.counts.items()) if n}
    return {
        "at": at, "seq": last, "snapshot_seq": start, "state_hash": board.state_hash(),
        "tasks": tasks, "runs": len(board.runs),
        "workers": {w.worker_id: {"status": w.status, "scheduling": w.scheduling,
                                  "slots": w.slots,
                                  "leases": sorted(board.leases_by_worker.get(w.worker_id, ()))}
                    for w in board.workers.values()},
        "queued": sorted(t.task_id for t in board.tasks.values() if t.status == "queued"),
        "live": {t.task_id: t.worker_id for t in board.tasks.values() if t.live},
    }
