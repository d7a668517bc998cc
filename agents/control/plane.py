"""The control plane: api, scheduler and recovery in one process, sharing one fold.

Each role is the same agent class as when it runs alone (`dtf agent api` etc.); sharing
the fold means each event is delivered, decoded and folded once instead of three times.
`dtf up` runs this; separate processes remain the way to run replicas on many hosts.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from agents.auth.keyring import Keyring
from agents.control.api import ApiAgent
from agents.control.recovery import RecoveryAgent
from agents.control.scheduler import SchedulerAgent
from agents.log import snapshots
from agents.log.fold import Folder, jetstream_dead_letter
from agents.log.port import EventLog
from dtf_core.policy import Policy
from projections.board import Board


class ControlPlane:
    def __init__(
        self, nc: Client, eventlog: EventLog, *, heartbeat_interval: float = 1.0,
        misses: int = 5, secure: bool = False, keyring: Keyring | None = None,
        board: Board | None = None, policy: Policy | None = None,
        quotas: dict[str, int] | None = None, lead: bool = False,
        snapshot_every: int | None = snapshots.EVERY_EVENTS,
    ) -> None:
        """``snapshot_every``: store a board snapshot after this many events (None: never,
        and a cold start replays the whole log)."""
        self.nc = nc
        self.folder = Folder(eventlog, board or Board(),
                             dead_letter=jetstream_dead_letter(nc, "control"))
        self.api = ApiAgent(nc, eventlog, folder=self.folder, secure=secure, keyring=keyring)
        self.scheduler = SchedulerAgent(nc, eventlog, folder=self.folder, policy=policy,
                                        quotas=quotas, lead=lead)
        self.api.scheduler = self.scheduler  # queues what it submits at once: ADR 0012
        self.recovery = RecoveryAgent(
            nc, eventlog, heartbeat_interval=heartbeat_interval, misses=misses,
            folder=self.folder, lead=lead,
        )
        self.ready = self.api.ready
        self.snapshot_every = snapshot_every
        self.snapshotter: snapshots.Snapshotter | None = None

    def _leads(self) -> bool:
        lead = self.scheduler.leadership
        return lead is None or lead.is_leader()

    async def run(self) -> None:
        if self.snapshot_every is not None and not self.folder.board.tasks:
            js = self.nc.jetstream()
            self.folder.position = await snapshots.load_into(js, self.folder.board)
            self.snapshotter = snapshots.Snapshotter(
                js, self.folder, every_events=self.snapshot_every, allowed=self._leads)
        async with asyncio.TaskGroup() as tg:
            if self.snapshotter is not None:
                tg.create_task(self.snapshotter.run())
            tg.create_task(self.folder.run())
            tg.create_task(self.api.run())
            tg.create_task(self.scheduler.run())
            tg.create_task(self.recovery.run())
