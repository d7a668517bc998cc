"""The autoscaler agent: folds the log, asks the policy (``dtf_core.autoscale``) how many
workers its group needs, records the decision (``scale_requested``), has its provider carry
it out and records the outcome (``scale_done``).

Scaling down never costs a lease: it drains idle workers through the api (`dtf worker
drain`: no new leases; a lease not started yet moves elsewhere without spending a retry),
waits until the log shows the worker holds no lease, and only then stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence

from nats.aio.client import Client

from agents.control.base import FoldingAgent
from agents.control.leadership import holder_id
from agents.control.scale_down import Drainer, new_ids
from agents.control.scaling import (
    Provider,
    last_times,
    last_week_s,
    members,
    read_load,
    still_starting,
)
from agents.log.commit import Change
from agents.log.port import EventLog
from agents.wire.client import ApiClient
from dtf_core import autoscale
from dtf_core.errors import DTFError
from dtf_core.events.codec import Event
from dtf_core.events.scale import ScaleDone, ScaleRequested
from dtf_core.events.task import AttemptOutcome, TaskSubmitted

log = logging.getLogger(__name__)
START_GRACE_S = 60.0  # a started worker that has not registered by then no longer counts


class AutoscalerAgent(FoldingAgent):
    role = "autoscaler"

    def __init__(self, nc: Client | None, eventlog: EventLog, provider: Provider, *,
                 group: str, limits: autoscale.Limits, slots: int = 1,
                 api: ApiClient | None = None, interval: float = 0.5,
                 clock: Callable[[], float] = time.time, lead: bool = False,
                 name: str = "") -> None:
        # one claim per group: autoscalers of other groups lead their own at the same time
        # (and an autoscaler's credential may write only its own group's claim)
        self.role = f"autoscaler-{group}"
        name = name or self.role
        self.kick = asyncio.Event()
        super().__init__(nc, eventlog, name=name, clock=clock, lead=lead,
                         on_gain=self.kick.set)
        self.folder.listeners.append(self._on_batch)
        self.provider = provider
        self.actor = holder_id(name)  # in its events: which process decided
        self.group = group
        self.limits = limits
        self.slots = slots
        self.api = api or (ApiClient(nc) if nc is not None else None)
        self.interval = interval
        self.means: dict[str, float] = {}  # estimate key -> mean measured seconds
        self.starting: dict[str, float] = {}  # started, not yet registered -> deadline
        self.drainer = Drainer(self.board, self.api, provider, interval=interval,
                               kick=self.kick)
        self._seasonal = (0.0, -1e18)  # (work s, when computed)
        self.ready = asyncio.Event()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                await self.start(tg)
                self.ready.set()
                log.info("autoscaler of group %r ready (%s, %d-%d workers)", self.group,
                         self.provider.name, self.limits.min_workers, self.limits.max_workers)
                while True:
                    await self.step()
                    try:
                        async with asyncio.timeout(self.interval):
                            await self.kick.wait()
                    except TimeoutError:
                        pass
                    self.kick.clear()
        finally:
            self.drainer.cancel()
            await asyncio.shield(self.provider.close())

    async def _on_batch(self, events: list[tuple[int, Event]]) -> None:
        for _, ev in events:
            if isinstance(ev, AttemptOutcome) and ev.duration_s > 0:
                t = self.board.tasks.get(ev.task_id)
                if t is not None:
                    autoscale.learn(self.means, autoscale.estimate_key(t.spec), ev.duration_s)
            elif isinstance(ev, TaskSubmitted):
                self.kick.set()

    def _starting(self, now: float) -> int:
        self.starting = still_starting(self.starting, members(self.board, self.group), now)
        return len(self.starting)

    def _last_week(self, now: float) -> float:
        work, at = self._seasonal
        if now - at > 60:
            work = last_week_s(self.board, self.group, now=now, means=self.means)
            self._seasonal = (work, now)
        return work

    def decide(self, now: float) -> tuple[autoscale.Decision, autoscale.Load]:
        load = read_load(self.board, self.group, now=now, means=self.means,
                         starting=self._starting(now), slots=self.slots,
                         draining=self.drainer.draining, last_week_s=self._last_week(now))
        last_up, last_change = last_times(self.board, self.group)
        return autoscale.decide(load, self.limits, now=now, last_up_at=last_up,
                                last_change_at=last_change), load

    async def step(self) -> autoscale.Decision | None:
        """One look at the load; acts on what the policy says. Returns the decision."""
        if not self.leads():
            return None
        now = self.clock()
        decision, load = self.decide(now)
        if decision.direction == "up":
            await self._scale_up(decision, load, now)
        elif decision.direction == "down":
            await self._scale_down(decision, load, now)
        return decision

    def _requested(self, decision: autoscale.Decision, load: autoscale.Load, now: float,
                   workers: Sequence[str]) -> ScaleRequested:
        return ScaleRequested(
            group=self.group, decision=uuid.uuid4().hex[:12], direction=decision.direction,  # type: ignore[arg-type]
            current=load.workers, target=decision.target, reason=decision.reason,
            workers=tuple(workers), provider=self.provider.name, queued=load.queued,
            running=load.running, predicted_s=round(load.predicted_s, 3), at=now,
            actor=self.actor)

    async def _record(self, event: ScaleRequested | ScaleDone) -> None:
        await self.commit([Change([event], None, None)])

    async def _scale_up(self, decision: autoscale.Decision, load: autoscale.Load,
                        now: float) -> None:
        ids = new_ids(self.board, self.group, decision.target - load.workers,
                      taken=set(self.starting) | self.drainer.draining)
        req = self._requested(decision, load, now, ids)
        await self._record(req)
        log.info("scaling %s up to %d: %s", self.group, decision.target, decision.reason)
        t0 = time.monotonic()
        try:
            await self._reopen(ids)
            started = await self.provider.start(ids)
        except (DTFError, OSError) as exc:
            log.warning("scale-up of %s failed: %s", self.group, exc)
            await self._done(req, False, (), f"{type(exc).__name__}: {exc}", t0)
            return
        for i, wid in enumerate(started):  # "": a provider that cannot name its workers
            self.starting[wid or f"?{now}-{i}"] = now + START_GRACE_S
        await self._done(req, True, tuple(w for w in started if w),
                         f"started {len(started)} worker(s)", t0)

    async def _reopen(self, ids: Sequence[str]) -> None:
        """A drained worker stays drained across restarts: one started again under the same
        id is opened for leases first."""
        for wid in ids:
            w = self.board.workers.get(wid)
            if w is not None and w.scheduling != "open" and self.api is not None:
                await self.api.manage_worker(wid, "uncordon",
                                             reason=f"started again by {self.actor}")

    async def _scale_down(self, decision: autoscale.Decision, load: autoscale.Load,
                          now: float) -> None:
        req = self._requested(decision, load, now, decision.drain)
        await self._record(req)
        log.info("scaling %s down to %d: %s", self.group, decision.target, decision.reason)
        self.drainer.start(req, self._done)

    async def _done(self, req: ScaleRequested, ok: bool, workers: tuple[str, ...],
                    reason: str, t0: float) -> None:
        await self._record(ScaleDone(group=self.group, decision=req.decision, ok=ok,
                                     workers=workers, reason=reason,
                                     took_s=round(time.monotonic() - t0, 3),
                                     at=self.clock(), actor=self.actor))
