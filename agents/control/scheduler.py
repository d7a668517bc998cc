"""The scheduler agent: folds the log, places queued tasks on free slots, appends leases.

Safety comes from optimistic concurrency: a lease is appended only if the task's last
sequence is the one this scheduler saw, so two schedulers can never both lease a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from nats.aio.client import Client

from agents.control.base import FoldingAgent
from agents.control.leadership import TTL_S
from agents.log.commit import task_change
from agents.log.fold import Folder
from agents.log.port import EventLog
from dtf_core import scheduling
from dtf_core.errors import DTFError
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskEventBase
from dtf_core.looks import Looks
from dtf_core.placement import place, refusing
from dtf_core.policy import DefaultPolicy, Policy
from dtf_core.queue import ReadyQueue
from dtf_core.task import TaskState

log = logging.getLogger(__name__)
RETRY_S = 0.25

STEAL_AFTER_S = 5.0  # a lease not started after this long may move to an idle worker
WAITING_AFTER_S = 30.0  # a task queued longer than this gets a `waiting` explanation
WAITING_PER_ROUND = 500  # explanations written per sweep at most


class SchedulerAgent(FoldingAgent):
    role = "scheduler"

    def __init__(
        self, nc: Client | None, eventlog: EventLog,
        *,
        name: str = "scheduler",
        clock: Callable[[], float] = time.time,
        folder: Folder | None = None,
        policy: Policy | None = None,
        quotas: Mapping[str, int] | None = None,
        steal_after: float | None = STEAL_AFTER_S,
        lead: bool = False,
        lead_ttl: float = TTL_S,
        waiting_after: float | None = WAITING_AFTER_S,
    ) -> None:
        # With ``lead``, only the holder of the scheduler claim places tasks (standbys fold
        # and wait); without it, every scheduler places and OCC keeps leases single.
        self.wake = asyncio.Event()
        super().__init__(nc, eventlog, name=name, clock=clock, folder=folder, lead=lead,
                         lead_ttl=lead_ttl, on_gain=self.wake.set)
        self.folder.listeners.append(self._on_batch)
        self.policy = policy or DefaultPolicy()
        self.quotas = dict(quotas or {})  # owner -> most live leases at once
        self._next_waiting_sweep = 0.0
        self.waiting_sweeps = 0  # sweeps that explained long waits
        self.parked: dict[str, list[TaskState]] = {}  # owner at quota -> its waiting tasks
        self.ready_q = ReadyQueue(self.policy)
        # the lease's actor names which scheduler placed it (`dtf audit`)
        self.actor = self.leadership.holder if self.leadership else name
        self.leases_made = 0
        self.leases_tried = 0
        self.leases_with_submission = 0  # written as their submission too (ADR 0018)
        self.placing = asyncio.Lock()  # a round, or leases written by the api
        self.looks = Looks(steal_after=steal_after, waiting_after=waiting_after)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            await self.start(tg)
            self._requeue_all()
            log.info("scheduler ready at seq %d, %d queued", self.board.last_seq, len(self.ready_q))
            await self._loop()

    async def _on_batch(self, events: list[tuple[int, Event]]) -> None:
        for _, ev in events:
            if isinstance(ev, TaskEventBase):
                t = self.board.tasks.get(ev.task_id)
                if t is None:
                    continue
                if not t.live and t.owner in self.parked:
                    for parked in self.parked.pop(t.owner):  # a lease of theirs ended
                        self.ready_q.push(parked)
                if t.status == "queued":
                    self.ready_q.push(t)
                elif t.terminal:
                    self._push_ids(self.ready_q.dependents(t.task_id))
        if len(self.ready_q) or self.parked or self.looks.woken_by(events):
            self.wake.set()  # else a round would find nothing to place (dtf_core/looks.py)

    def _push_ids(self, task_ids: set[str] | list[str]) -> int:
        queued = [t for i in task_ids if (t := self.board.tasks.get(i)) and t.status == "queued"]
        for t in queued:
            self.ready_q.push(t)
        return len(queued)

    async def _loop(self) -> None:
        while True:
            timeout = self.looks.plan(self.ready_q, self.board, self.board.counts,
                                      self.clock())
            try:
                async with asyncio.timeout(timeout):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                while await self.round():
                    pass
            except DTFError as exc:  # the log did not answer (a node died): try again soon
                log.warning("scheduling round failed: %s; retrying", exc)
                self._requeue_all()
                await asyncio.sleep(RETRY_S)
                self.wake.set()

    def _requeue_all(self) -> None:
        """The queue rebuilt from the board (which holds only what the log acknowledged):
        at start, and after a failed round, so no task taken out for it is forgotten."""
        self.ready_q = ReadyQueue(self.policy)
        for t in self.board.tasks.values():
            if t.status == "queued":
                self.ready_q.push(t)

    def submitted_here(self, task_ids: list[str]) -> None:
        """Submitted by this process's api (on the shared board): a round now (ADR 0012),
        unless none is queued (each was leased as it was submitted, ADR 0018)."""
        if self._push_ids(task_ids):
            self.wake.set()

    async def round(self) -> bool:
        """One scheduling round; True if it appended anything (so another may help)."""
        async with self.placing:
            return await self._round()

    async def _round(self) -> bool:
        if not self.leads():
            return False  # a standby: folds, and takes over when the claim expires
        now = self.clock()
        self._push_ids(self.ready_q.due(now))
        decided = scheduling.missed_deadlines(self.ready_q, self.board, now=now,
                                              actor=self.actor)
        slots = scheduling.slots(self.board)
        free = sum(s.free for s in slots)
        picked = scheduling.pick(self.ready_q, self.board, free, now=now, actor=self.actor,
                                 quotas=self.quotas, policy=self.policy) \
            if free else scheduling.Picked()
        for t in picked.parked:
            self.parked.setdefault(t.owner, []).append(t)  # back when a lease of theirs ends
        decided += picked.decided
        types = {t.task_id: t.spec.type for t in picked.tasks} if refusing(slots) else None
        decisions = place(((t.task_id, t.spec.requirements) for t in picked.tasks), slots,
                          score=self.policy.score, policy=self.policy.name, types=types)
        placed = {d.task_id for d in decisions}
        for t in picked.tasks:
            if t.task_id not in placed:
                self.ready_q.push(t)
        steal_after = self.looks.steal_after
        if not picked.tasks and free and steal_after is not None:
            decided += scheduling.steals(self.board, slots, now=now, actor=self.actor,
                                         steal_after=steal_after, policy=self.policy)
        decided += self._explain_waiting(now, skip={task_id for task_id, _ in decided} | placed)
        decided += scheduling.leases(decisions, self.board, now=now, actor=self.actor)
        if not decided:
            return False
        self.leases_tried += len(decisions)
        results = await self.commit([task_change(self.board, task_id, events)
                                     for task_id, events in decided])
        self.leases_made += sum(seqs is not None for seqs in results)
        return True

    def _explain_waiting(self, now: float, skip: set[str]) -> list[scheduling.Decided]:
        """Every so often, why tasks queued past the threshold still wait."""
        waiting_after = self.looks.waiting_after
        if waiting_after is None or now < self._next_waiting_sweep:
            return []
        self._next_waiting_sweep = now + waiting_after / 2
        self.waiting_sweeps += 1
        return scheduling.explain_waits(self.board, now=now, waiting_after=waiting_after,
                                        skip=skip, limit=WAITING_PER_ROUND, actor=self.actor)

