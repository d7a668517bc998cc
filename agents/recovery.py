"""The recovery agent turns silence into facts.

A worker whose heartbeats stop becomes ``worker.lost``; the live leases of a lost or
stopped worker, or of an earlier session of a restarted one, are requeued under the
task's retry policy (or end the task when its budget is spent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, get_args

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.appender import append_groups
from agents.eventlog import EventLog
from agents.leadership import TTL_S, Leadership, holder_id
from agents.plans import Change, task_change
from agents.runtime import Folder, jetstream_dead_letter
from dtf_core import subjects
from dtf_core import task as task_agg
from dtf_core import worker as worker_agg
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskEvent
from dtf_core.events.worker import WorkerLost, WorkerRegistered, WorkerStopped
from dtf_core.task import TaskState
from projections.board import Board

log = logging.getLogger(__name__)
_hb_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def recovery_filters() -> list[str]:
    """Recovery needs every task event after the first (its OCC checks need each task's
    last sequence) and every worker event; skipping ``submitted`` saves a third of its
    deliveries. Derived from the event union, so a new event type is never missed."""
    tags = [cls.__struct_config__.tag for cls in get_args(TaskEvent)]
    addressed = {"leased", "cancel_requested"}
    return [*subjects.task_filters_after_submit([str(t) for t in tags], addressed),
            subjects.WORKER_EVENTS, subjects.lead_filter("recovery")]


class RecoveryAgent:
    def __init__(
        self,
        nc: Client,
        eventlog: EventLog,
        *,
        heartbeat_interval: float = 1.0,
        misses: int = 5,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "recovery",
        folder: Folder | None = None,
        lead: bool = False,
        lead_ttl: float = TTL_S,
    ) -> None:
        self.nc = nc
        self.log = eventlog
        self.interval = heartbeat_interval
        self.misses = misses
        self.clock = clock
        self.monotonic = monotonic
        self.name = name
        self.owns_folder = folder is None
        self.folder = folder or Folder(
            eventlog, Board(from_leases=True), dead_letter=jetstream_dead_letter(nc, name),
            filters=recovery_filters(),
        )
        self.folder.listeners.append(self._on_batch)
        self.board = self.folder.board
        self.last_seen: dict[str, tuple[str, float]] = {}
        # worker -> (session, fencing tokens it listed, when): from heartbeats
        self.held: dict[str, tuple[str, frozenset[int], float]] = {}
        self.lease_seen: dict[tuple[str, int], float] = {}  # live lease -> first sweep seen
        self.unheld_grace = max(2.0, 3 * heartbeat_interval)
        self.kick = asyncio.Event()
        # With ``lead``, only the holder of the recovery claim declares workers lost and
        # requeues; a standby keeps its heartbeat table warm and takes over on expiry.
        self.leadership = Leadership("recovery", holder_id(name), eventlog,
                                     self.board, ttl=lead_ttl, clock=clock,
                                     on_gain=self.kick.set) if lead else None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.owns_folder:
                tg.create_task(self.folder.run())
            await self.folder.caught_up.wait()
            await self.nc.subscribe("dtf.hb.*", cb=self._on_heartbeat)
            log.info("recovery ready at seq %d", self.board.last_seq)
            if self.leadership is not None:
                tg.create_task(self.leadership.run())
            while True:
                await self.sweep()
                try:
                    async with asyncio.timeout(self.interval / 2):
                        await self.kick.wait()
                except TimeoutError:
                    pass
                self.kick.clear()

    async def _on_batch(self, events: list[tuple[int, Event]]) -> None:
        for _, ev in events:
            if isinstance(ev, WorkerLost | WorkerStopped | WorkerRegistered):
                self.kick.set()

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            hb = _hb_decoder.decode(msg.data)
            session = str(hb["session"])
        except (msgspec.DecodeError, KeyError):
            log.warning("malformed heartbeat on %s", msg.subject)
            return
        worker_id = msg.subject.rsplit(".", 1)[-1]
        now = self.monotonic()
        self.last_seen[worker_id] = (session, now)
        leases = hb.get("leases")
        if isinstance(leases, list):
            self.held[worker_id] = (session, frozenset(leases), now)

    def _seen(self, worker_id: str, session: str, since: float) -> float:
        seen = self.last_seen.get(worker_id)
        if seen is None or seen[0] != session:
            self.last_seen[worker_id] = (session, since)
            return since
        return seen[1]

    def _unheld(self, t: TaskState, mono: float) -> bool:
        """A live lease that its worker's heartbeats have not listed for the grace period
        since recovery first saw the lease (a lost delivery; an attempt the worker dropped)."""
        first = self.lease_seen.setdefault((t.task_id, t.lease_seq), mono)
        held = self.held.get(t.worker_id)
        if held is None or held[0] != t.session:
            return False  # a worker that does not list its leases: nothing to compare
        return held[2] - first >= self.unheld_grace and t.lease_seq not in held[1]

    async def sweep(self) -> int:
        """Declare silent workers lost and requeue orphaned leases; returns events written."""
        if self.leadership is not None and not self.leadership.is_leader():
            return 0
        now, mono = self.clock(), self.monotonic()
        deadline = self.interval * self.misses
        changes: list[Change] = []
        for w in list(self.board.workers.values()):
            if w.status != "alive":
                continue
            seen = self._seen(w.worker_id, w.session, mono)
            if mono - seen > deadline:
                lost = worker_agg.decide_lost(
                    w, session=w.session, last_seen=now - (mono - seen), now=now,
                    actor=self.name, reason=f"no heartbeat for {mono - seen:.1f}s",
                )
                changes.append(
                    Change(list(lost), self.board.expect("worker", w.worker_id, w.last_seq),
                           subjects.worker_filter(w.worker_id))
                )
        for worker_id, task_ids in list(self.board.leases_by_worker.items()):
            holder = self.board.workers.get(worker_id)
            for task_id in list(task_ids):
                t = self.board.tasks[task_id]
                if holder is not None and holder.status == "alive" and t.session == holder.session:
                    if not self._unheld(t, mono):
                        continue
                    reason = (f"worker {worker_id} does not hold the lease (it never got it, "
                              "or lost the attempt)")
                    events = task_agg.decide_lease_lost(  # counted: a worker that keeps
                        t, reason=reason, now=now, actor=self.name)  # dropping it ends it
                    if events:
                        changes.append(task_change(self.board, task_id, list(events)))
                    continue
                if holder is not None and holder.status == "alive":
                    reason, clean = f"worker {worker_id} restarted", False
                elif holder is not None and holder.status == "stopped" and \
                        t.session == holder.session:
                    reason, clean = f"worker {worker_id} stopped", True
                else:
                    reason, clean = f"worker {worker_id} lost", False
                events = task_agg.decide_lease_lost(
                    t, reason=reason, now=now, actor=self.name, clean_stop=clean
                )
                if events:
                    changes.append(task_change(self.board, task_id, list(events)))
        live = {(t.task_id, t.lease_seq) for ids in self.board.leases_by_worker.values()
                for t in (self.board.tasks[i] for i in ids)}
        self.lease_seen = {k: v for k, v in self.lease_seen.items() if k in live}
        if not changes:
            return 0
        results = await append_groups(self.log, [c.appends() for c in changes])
        written = 0
        for change, seqs in zip(changes, results, strict=True):
            if seqs is None:
                continue
            for seq, ev in zip(seqs, change.events, strict=True):
                self.board.apply(seq, ev)
                written += 1
        if written:
            log.info("recovery wrote %d events", written)
            self.kick.set()
        return written
