"""Scaling down without losing a lease: drain, wait until the log shows no lease, then stop.

A drained worker takes no new lease; a lease it had not started yet moves elsewhere without
spending a retry (`dtf worker drain`); running ones finish where they are. Only when the
fold shows the worker draining and holding nothing does the provider stop it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from agents.auth.roles import autoscaled_worker_id
from agents.control.scaling import Provider
from agents.wire.client import ApiClient
from dtf_core.errors import DTFError
from dtf_core.events.scale import ScaleRequested
from projections.board import Board

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 3600.0  # a drained worker still busy after this is stopped anyway
# (the request, ok, the workers done, why, when it began) -> the scale_done recorded
Done = Callable[[ScaleRequested, bool, tuple[str, ...], str, float], Awaitable[None]]


def new_ids(board: Board, group: str, count: int, *, taken: set[str]) -> list[str]:
    """``count`` worker ids of the group that are not running (neither alive nor lost: a
    lost one may come back) nor ``taken``: the lowest free numbers. The api gives an
    autoscaler a key only for such an id."""
    busy = {w for w, s in board.workers.items() if s.status != "stopped"} | taken
    out: list[str] = []
    n = 1
    while len(out) < count:
        wid = autoscaled_worker_id(group, n)
        if wid not in busy:
            out.append(wid)
        n += 1
    return out


class Drainer:
    def __init__(self, board: Board, api: ApiClient | None, provider: Provider, *,
                 interval: float, kick: asyncio.Event) -> None:
        self.board = board
        self.api = api
        self.provider = provider
        self.interval = interval
        self.kick = kick
        self.draining: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, req: ScaleRequested, done: Done) -> None:
        self.draining |= set(req.workers)
        task = asyncio.create_task(self._drain_and_stop(req, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _drain_and_stop(self, req: ScaleRequested, done: Done) -> None:
        t0 = time.monotonic()
        try:
            if self.api is None:
                raise DTFError("no api client to drain workers through")
            for wid in req.workers:
                await self.api.manage_worker(wid, "drain", reason=req.reason)
            await self._until_no_lease(req.workers)
            await self.provider.stop(req.workers)
            await done(req, True, req.workers,
                       f"drained and stopped {len(req.workers)} worker(s)", t0)
        except (DTFError, OSError) as exc:
            log.warning("scale-down of %s failed: %s", req.group, exc)
            await done(req, False, (), f"{type(exc).__name__}: {exc}", t0)
        finally:
            self.draining -= set(req.workers)
            self.kick.set()

    async def _until_no_lease(self, worker_ids: Sequence[str]) -> None:
        """Wait until the fold shows each worker draining and holding no lease."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(self.drained(w) for w in worker_ids):
                return
            await asyncio.sleep(self.interval / 2)  # polls the fold, which moves on its own
        log.warning("workers %s still hold leases after %.0fs; stopping them (their leases "
                    "are requeued without spending a retry)", worker_ids, DRAIN_TIMEOUT_S)

    def drained(self, worker_id: str) -> bool:
        w = self.board.workers.get(worker_id)
        if w is None or w.status != "alive":
            return True
        return w.scheduling == "draining" and not self.board.leases_by_worker.get(worker_id)
