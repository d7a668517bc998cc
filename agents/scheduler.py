"""The scheduler agent: folds the log, places queued tasks on free slots, appends leases.

Safety comes from optimistic concurrency: a lease is appended only if the task's last
sequence is the one this scheduler saw, so two schedulers can never both lease a task.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Mapping

from nats.aio.client import Client

from agents.appender import append_groups
from agents.eventlog import EventLog
from agents.leadership import TTL_S, Leadership, holder_id
from agents.plans import Change, task_change
from agents.runtime import Folder, jetstream_dead_letter
from dtf_core import task as task_agg
from dtf_core.errors import DTFError
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskEventBase
from dtf_core.explain import waiting_reason
from dtf_core.placement import Slot, place
from dtf_core.policy import DefaultPolicy, Policy
from dtf_core.queue import ReadyQueue
from dtf_core.spec import all_dependencies
from dtf_core.task import TaskState
from projections.board import Board

log = logging.getLogger(__name__)
RETRY_S = 0.25

SCAN_LIMIT = 20_000
STEAL_AFTER_S = 5.0  # a lease not started after this long may move to an idle worker
WAITING_AFTER_S = 30.0  # a task queued longer than this gets a `waiting` explanation
WAITING_PER_ROUND = 500  # explanations written per sweep at most


class SchedulerAgent:
    def __init__(
        self,
        nc: Client | None,
        eventlog: EventLog,
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
        self.log = eventlog
        self.name = name
        self.clock = clock
        dead_letter = jetstream_dead_letter(nc, name) if nc is not None else _log_only
        self.owns_folder = folder is None
        self.folder = folder or Folder(eventlog, Board(), dead_letter=dead_letter)
        self.folder.listeners.append(self._on_batch)
        self.board = self.folder.board
        self.policy = policy or DefaultPolicy()
        self.quotas = dict(quotas or {})  # owner -> most live leases at once
        self.steal_after = steal_after  # seconds a lease may sit unstarted before a steal
        self.waiting_after = waiting_after
        self._next_waiting_sweep = 0.0
        self.waiting_sweeps = 0
        self.parked: dict[str, list[TaskState]] = {}  # owner at quota -> its waiting tasks
        self.ready_q = ReadyQueue(self.policy)
        self.wake = asyncio.Event()
        # With ``lead``, only the holder of the scheduler claim places tasks (standbys fold
        # and wait); without it, every scheduler places and OCC keeps leases single.
        self.leadership = Leadership("scheduler", holder_id(name), eventlog,
                                     self.board, ttl=lead_ttl, clock=clock,
                                     on_gain=self.wake.set) if lead else None
        # the lease's actor names which scheduler placed it (`dtf audit`)
        self.actor = self.leadership.holder if self.leadership else name
        self.leases_made = 0
        self.leases_tried = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.owns_folder:
                tg.create_task(self.folder.run())
            await self.folder.caught_up.wait()
            for t in self.board.tasks.values():
                if t.status == "queued":
                    self.ready_q.push(t)
            log.info("scheduler ready at seq %d, %d queued", self.board.last_seq, len(self.ready_q))
            if self.leadership is not None:
                tg.create_task(self.leadership.run())
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
                    for dep in self.ready_q.waiting_on.pop(t.task_id, ()):
                        waiting = self.board.tasks.get(dep)
                        if waiting is not None:
                            self.ready_q.push(waiting)
        self.wake.set()

    async def _loop(self) -> None:
        while True:
            due = self.ready_q.next_due()
            timeout = None if due is None else max(0.0, due - self.clock())
            if self.waiting_after is not None and self.board.counts.get("queued", 0):
                timeout = min(timeout if timeout is not None else self.waiting_after,
                              self.waiting_after / 2)  # queued tasks: explain long waits
            if self.steal_after is not None and self.board.counts.get("leased", 0):
                timeout = min(timeout if timeout is not None else self.steal_after,
                              self.steal_after)  # unstarted leases: look again for steals
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
        """After a failed round, the queue is rebuilt from the board (which holds only what
        the log acknowledged), so no task taken out for the round is forgotten."""
        self.ready_q = ReadyQueue(self.policy)
        for t in self.board.tasks.values():
            if t.status == "queued":
                self.ready_q.push(t)

    async def round(self) -> bool:
        """One scheduling round; True if it appended anything (so another may help)."""
        if self.leadership is not None and not self.leadership.is_leader():
            return False  # a standby: folds, and takes over when the claim expires
        now = self.clock()
        while self.ready_q.delayed and self.ready_q.delayed[0][0] <= now:
            _, task_id = heapq.heappop(self.ready_q.delayed)
            t = self.board.tasks.get(task_id)
            if t is not None and t.status == "queued":
                self.ready_q.push(t)
        changes: list[Change] = []
        self._flag_deadlines(now, changes)
        slots = self._slots()
        free = sum(s.free for s in slots)
        candidates = self._candidates(free, now, changes) if free else []
        decisions = place(((t.task_id, t.spec.requirements) for t in candidates), slots,
                          score=self.policy.score, policy=self.policy.name)
        placed = {d.task_id for d in decisions}
        for t in candidates:
            if t.task_id not in placed:
                self.ready_q.push(t)
        if not candidates and free:
            self._steal(slots, now, changes)
        touched = {str(getattr(c.events[0], "task_id", "")) for c in changes if c.events}
        self._explain_waiting(now, changes, skip=touched | placed)
        for d in decisions:
            t = self.board.tasks[d.task_id]
            lease = task_agg.decide_lease(
                t, worker_id=d.worker_id, session=d.session, now=now, actor=self.actor, why=d.why
            )
            changes.append(task_change(self.board, t.task_id, [lease]))
        if not changes:
            return False
        self.leases_tried += len(decisions)
        results = await append_groups(self.log, [c.appends() for c in changes])
        for change, seqs in zip(changes, results, strict=True):
            if seqs is None:
                continue  # someone else changed the task first; the fold will tell us what
            for seq, ev in zip(seqs, change.events, strict=True):
                self.board.apply(seq, ev)
            self.leases_made += 1
        return True

    def _slots(self) -> list[Slot]:
        slots = []
        for w in self.board.workers.values():
            if w.status != "alive":
                continue
            live = [self.board.tasks[t].spec.requirements
                    for t in self.board.leases_by_worker.get(w.worker_id, ())]
            free = w.slots - len(live)
            if w.scheduling != "open":
                free = 0  # cordoned or draining: no new leases
            # Busy workers too (free 0): placement asks whether any live worker could run
            # a task before sending a rerun back to a worker it avoids.
            slots.append(Slot(
                worker_id=w.worker_id, session=w.session, capabilities=w.capabilities,
                free=max(free, 0), slots=w.slots,
                free_memory_gb=w.capabilities.memory_gb - sum(r.min_memory_gb for r in live),
                free_gpus=len(w.capabilities.gpus) - sum(r.gpus for r in live)))
        return slots

    def _steal(self, slots: list[Slot], now: float, changes: list[Change]) -> None:
        """Idle slots and nothing queued: take over leases that have sat unstarted on
        another worker for ``steal_after`` seconds (a stalled or overloaded worker)."""
        if self.steal_after is None:
            return
        stale = [t for ids in self.board.leases_by_worker.values() for t in
                 (self.board.tasks[i] for i in ids)
                 if t.status == "leased" and now - (t.leased_at or now) >= self.steal_after]
        if not stale:
            return
        for d in place(((t.task_id, t.spec.requirements) for t in stale), slots,
                       score=self.policy.score, policy=self.policy.name):
            t = self.board.tasks[d.task_id]
            events = task_agg.decide_steal(t, worker_id=d.worker_id, session=d.session,
                                           now=now, actor=self.actor, why=d.why)
            if events:
                changes.append(task_change(self.board, t.task_id, list(events)))

    def _explain_waiting(self, now: float, changes: list[Change], skip: set[str]) -> None:
        """Every so often, write why tasks queued past the threshold still wait, once per
        reason (the explanation is deduplicated by the task's last one)."""
        if self.waiting_after is None or now < self._next_waiting_sweep:
            return
        self._next_waiting_sweep = now + self.waiting_after / 2
        self.waiting_sweeps += 1
        leases = {w: len(ids) for w, ids in self.board.leases_by_worker.items()}
        written = 0
        for t in self.board.tasks.values():
            if written >= WAITING_PER_ROUND:
                break
            if (t.status != "queued" or now - t.submitted_at < self.waiting_after
                    or t.task_id in skip):
                continue
            deps = {d: self.board.tasks.get(d) for d in all_dependencies(t.spec)}
            reason, detail = waiting_reason(t, self.board.workers, leases, deps, now)
            events = task_agg.decide_waiting(t, reason, detail, now=now, actor=self.actor)
            if events:
                changes.append(task_change(self.board, t.task_id, list(events)))
                written += 1

    def _flag_deadlines(self, now: float, changes: list[Change]) -> None:
        while self.ready_q.deadlines and self.ready_q.deadlines[0][0] < now:
            _, task_id = heapq.heappop(self.ready_q.deadlines)
            t = self.board.tasks.get(task_id)
            if t is not None:
                events = task_agg.decide_deadline(t, now=now, actor=self.actor)
                if events:
                    changes.append(task_change(self.board, task_id, list(events)))

    def _share_load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for task_ids in self.board.leases_by_worker.values():
            for task_id in task_ids:
                share = self.policy.share_key(self.board.tasks[task_id])
                load[share] = load.get(share, 0) + 1
        return load

    def _candidates(self, free: int, now: float, changes: list[Change]) -> list[TaskState]:
        out: list[TaskState] = []
        examined = 0
        load = self._share_load()
        owners = self._owner_load() if self.quotas else {}
        while len(out) < free and examined < SCAN_LIMIT:
            task_id = self.ready_q.pop(load)
            if task_id is None:
                break
            examined += 1
            t = self.board.tasks.get(task_id)
            if t is None or t.status != "queued" or t.cancel_requested:
                continue
            if t.not_before > now:
                heapq.heappush(self.ready_q.delayed, (t.not_before, task_id))
                continue
            if not self._deps_ready(t, now, changes):
                continue
            quota = self.quotas.get(t.owner)
            if quota is not None and owners.get(t.owner, 0) >= quota:
                self.parked.setdefault(t.owner, []).append(t)  # back when a lease ends
                continue
            owners[t.owner] = owners.get(t.owner, 0) + 1
            out.append(t)
        return out

    def _owner_load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for task_ids in self.board.leases_by_worker.values():
            for task_id in task_ids:
                owner = self.board.tasks[task_id].owner
                load[owner] = load.get(owner, 0) + 1
        return load

    def _deps_ready(self, t: TaskState, now: float, changes: list[Change]) -> bool:
        soft = set(t.spec.soft_dependencies)
        for dep_id in all_dependencies(t.spec):
            dep = self.board.task_or_tombstone(dep_id)
            if dep is None or not dep.terminal:
                self.ready_q.waiting_on.setdefault(dep_id, set()).add(t.task_id)
                return False
            if dep.status != "succeeded" and dep_id not in soft:
                events = task_agg.decide_dependency_failed(t, dep, now=now, actor=self.actor)
                if events:
                    changes.append(task_change(self.board, t.task_id, list(events)))
                return False
        return True


async def _log_only(rec: object, why: str) -> None:
    log.warning("undecodable event: %s", why)
