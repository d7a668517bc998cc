"""The recovery agent turns silence into facts.

A worker whose heartbeats stop becomes ``worker.lost``; the live leases of a lost or
stopped worker, or of an earlier session of a restarted one, are requeued under the
task's retry policy (or end the task when its budget is spent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import get_args

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.natsauth.permissions import reply_target
from agents.control.base import FoldingAgent
from agents.control.leadership import TTL_S
from agents.log.commit import task_change, worker_change
from agents.log.fold import Folder
from agents.log.port import EventLog
from agents.wire.messages import HEARTBEAT_LOST, Heartbeat, decode_heartbeat
from dtf_core import orphans, scheduling, subjects
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskEvent
from dtf_core.events.worker import WorkerLost, WorkerRegistered, WorkerStopped
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState
from projections.board import Board

log = logging.getLogger(__name__)


def recovery_filters() -> list[str]:
    """Recovery needs every task event after the first (its OCC checks need each task's
    last sequence) and every worker event; skipping ``submitted`` saves a third of its
    deliveries. Derived from the event union, so a new event type is never missed."""
    tags = [cls.__struct_config__.tag for cls in get_args(TaskEvent)]
    addressed = {"leased", "cancel_requested"}
    return [*subjects.task_filters_after_submit([str(t) for t in tags], addressed),
            subjects.WORKER_EVENTS, subjects.lead_filter("recovery")]


class RecoveryAgent(FoldingAgent):
    role = "recovery"

    def __init__(
        self,
        nc: Client | None,
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
        # With ``lead``, only the holder of the recovery claim declares workers lost and
        # requeues; a standby keeps its heartbeat table warm and takes over on expiry.
        self.kick = asyncio.Event()
        super().__init__(nc, eventlog, name=name, clock=clock, folder=folder,
                         board=Board(from_leases=True), filters=recovery_filters(),
                         lead=lead, lead_ttl=lead_ttl, on_gain=self.kick.set)
        self.folder.listeners.append(self._on_batch)
        self.interval = heartbeat_interval
        self.misses = misses
        self.monotonic = monotonic
        self.last_seen: dict[str, tuple[str, float]] = {}
        # worker -> (session, fencing tokens it listed, when): from heartbeats
        self.held: dict[str, tuple[str, frozenset[int], float]] = {}
        self.lease_seen: dict[tuple[str, int], float] = {}  # live lease -> first sweep seen
        self.unheld_grace = max(2.0, 3 * heartbeat_interval)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            await self.start(tg)
            if self.nc is not None:
                await self.nc.subscribe("dtf.hb.*", cb=self._on_heartbeat)
            log.info("recovery ready at seq %d", self.board.last_seq)
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
            beat = decode_heartbeat(msg.data)
        except msgspec.DecodeError:
            log.warning("malformed heartbeat on %s", msg.subject)
            return
        worker_id = msg.subject.rsplit(".", 1)[-1]
        self.heard(worker_id, beat)
        state = self.board.workers.get(worker_id)
        if msg.reply and state is not None and state.status == "lost" \
                and state.session == beat.session and self.nc is not None:
            # declared lost, heard again (a pause, a partition, a NATS restart): told so,
            # it registers again; into its own inbox only
            target = reply_target(msg.reply, "worker", worker_id)
            with contextlib.suppress(nats.errors.Error):
                if target is not None:
                    await self.nc.publish(target, HEARTBEAT_LOST)

    def heard(self, worker_id: str, beat: Heartbeat) -> None:
        """A heartbeat arrived: the worker's session is alive, holding ``beat.leases``."""
        now = self.monotonic()
        self.last_seen[worker_id] = (beat.session, now)
        if beat.leases is not None:
            self.held[worker_id] = (beat.session, frozenset(beat.leases), now)

    def _silent_for(self, w: WorkerState) -> float:
        """Seconds since ``w``'s session was last heard; a session not heard yet counts
        from the first time recovery sees it."""
        mono = self.monotonic()
        seen = self.last_seen.get(w.worker_id)
        if seen is None or seen[0] != w.session:
            self.last_seen[w.worker_id] = (w.session, mono)
            return 0.0
        return mono - seen[1]

    def _deadline(self, w: WorkerState) -> float:
        """How long ``w`` may be silent: ``misses`` of its heartbeats, at the interval it
        registered with where that is longer than recovery's own (a worker started with
        the default next to a control plane given a shorter one is not lost between beats)."""
        return max(self.interval, w.heartbeat_interval or 0.0) * self.misses

    def _unheld(self, t: TaskState) -> bool:
        """A live lease that its worker's heartbeats have not listed for the grace period
        since recovery first saw the lease (a lost delivery; an attempt the worker dropped)."""
        first = self.lease_seen.setdefault((t.task_id, t.lease_seq), self.monotonic())
        held = self.held.get(t.worker_id)
        if held is None or held[0] != t.session:
            return False  # a worker that does not list its leases: nothing to compare
        return held[2] - first >= self.unheld_grace and t.lease_seq not in held[1]

    async def sweep(self) -> int:
        """Declare silent workers lost and requeue orphaned leases; returns events written."""
        if not self.leads():
            return 0
        now = self.clock()
        changes = [worker_change(self.board, worker_id, events)
                   for worker_id, events in orphans.silent_workers(
                       self.board, self._silent_for, deadline=self._deadline,
                       now=now, actor=self.name)]
        changes += [task_change(self.board, task_id, events)
                    for task_id, events in orphans.orphaned_leases(
                        self.board, self._unheld, now=now, actor=self.name)]
        live = {(t.task_id, t.lease_seq) for t in scheduling.live_leases(self.board)}
        self.lease_seen = {k: v for k, v in self.lease_seen.items() if k in live}
        results = await self.commit(changes)
        written = sum(len(c.events) for c, seqs in zip(changes, results, strict=True)
                      if seqs is not None)
        if written:
            log.info("recovery wrote %d events", written)
            self.kick.set()
        return written
