"""What the autoscaler reads from its board, and the port its providers implement.

A provider starts and stops workers of one group: ``local`` (worker processes on this
host), ``docker`` (containers) or ``kubernetes`` (the worker Deployment's replicas). The
autoscaler decides how many and which; the provider only carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dtf_core import autoscale
from dtf_core.events.scale import ScaleRequested
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState
from projections.board import Board

WEEK_S = 7 * 24 * 3600.0
HOUR_S = 3600.0


class Provider(Protocol):
    """Starts and stops a group's workers. ``start`` returns the ids it started (a provider
    that cannot name them, like a Deployment's replicas, returns ``count`` placeholders
    ``""``); ``stop`` is called only for workers drained of every lease."""

    name: str

    async def start(self, worker_ids: Sequence[str]) -> list[str]: ...

    async def stop(self, worker_ids: Sequence[str]) -> None: ...

    async def close(self) -> None: ...


def in_group(w: WorkerState, group: str) -> bool:
    return w.capabilities.group == group


def members(board: Board, group: str) -> list[WorkerState]:
    """The group's live workers that take leases (not draining, not cordoned)."""
    return [w for w in board.workers.values()
            if w.status == "alive" and w.scheduling == "open" and in_group(w, group)]


def for_group(t: TaskState, group: str) -> bool:
    wanted = t.spec.requirements.worker_group
    return wanted is None or wanted == group


def read_load(board: Board, group: str, *, now: float, means: dict[str, float],
              starting: int, slots: int, draining: set[str],
              last_week_s: float = 0.0) -> autoscale.Load:
    """The figures the policy decides from. ``starting``: workers asked for and not yet
    registered; ``draining``: the group's workers being drained (not counted)."""
    queued: list[TaskState] = []
    if board.counts.get("queued", 0):
        queued = [t for t in board.tasks.values() if t.status == "queued" and for_group(t, group)]
    group_workers = [w for w in members(board, group) if w.worker_id not in draining]
    # the group's own leases: work on other workers needs no worker of this group
    running = sum(len(board.leases_by_worker.get(w.worker_id, ())) for w in group_workers)
    idle = tuple(w.worker_id for w in group_workers
                 if not board.leases_by_worker.get(w.worker_id))
    other_free = sum(max(0, w.slots - len(board.leases_by_worker.get(w.worker_id, ())))
                     for w in board.workers.values()
                     if w.status == "alive" and w.scheduling == "open"
                     and not in_group(w, group))
    ready = [t for t in queued if t.not_before <= now]
    # free slots outside the group take only the tasks that do not require the group
    anywhere = sum(1 for t in ready if t.spec.requirements.worker_group is None)
    return autoscale.Load(
        queued=len(ready), running=running,
        predicted_s=autoscale.predicted_s((t.spec for t in ready), means),
        oldest_wait_s=max((now - t.submitted_at for t in ready), default=0.0),
        workers=len(group_workers) + starting, idle=idle, slots=slots,
        other_free=min(other_free, anywhere), last_week_s=last_week_s)


def last_week_s(board: Board, group: str, *, now: float, means: dict[str, float]) -> float:
    """The estimated work submitted in the hour starting now, one week ago (what the board
    still holds of it)."""
    start, end = now - WEEK_S, now - WEEK_S + HOUR_S
    return autoscale.predicted_s(
        (t.spec for t in board.tasks.values()
         if start <= t.submitted_at < end and for_group(t, group)), means)


def last_times(board: Board, group: str) -> tuple[float | None, float | None]:
    """When the group last scaled up, and last changed either way (from the log, so a
    restarted autoscaler keeps its cooldowns)."""
    up: float | None = None
    change: float | None = None
    for ev in board.scaling.get(group, ()):
        if isinstance(ev, ScaleRequested):
            change = ev.at
            if ev.direction == "up":
                up = ev.at
    return up, change


def still_starting(starting: dict[str, float], group: list[WorkerState], now: float
                   ) -> dict[str, float]:
    """The workers asked for that have not registered yet (id -> deadline). Unnamed ones
    (``?<asked at>-<n>``, from a provider that cannot name them) are matched by count: each
    group worker registered since they were asked for stands for one of them."""
    alive = {w.worker_id for w in group}
    out = {w: d for w, d in starting.items() if d > now and w not in alive}
    unnamed = sorted((float(w[1:].split("-")[0]), w) for w in out if w.startswith("?"))
    if unnamed:
        since = unnamed[0][0]
        came = sum(1 for w in group if w.registered_at >= since and w.worker_id not in starting)
        for _, w in unnamed[:came]:
            del out[w]
    return out
