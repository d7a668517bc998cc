"""The control plane: api, scheduler and recovery in one process, sharing one fold.

Each role is the same agent class as when it runs alone (`dtf agent api` etc.); sharing
the fold means each event is delivered, decoded and folded once instead of three times.
`dtf up` runs this; separate processes remain the way to run replicas on many hosts.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from agents.api import ApiAgent
from agents.eventlog import EventLog
from agents.recovery import RecoveryAgent
from agents.runtime import Folder, jetstream_dead_letter
from agents.scheduler import SchedulerAgent
from agents.security.keyring import Keyring
from dtf_core.policy import Policy
from projections.board import Board


class ControlPlane:
    def __init__(
        self, nc: Client, eventlog: EventLog, *, heartbeat_interval: float = 1.0,
        misses: int = 5, secure: bool = False, keyring: Keyring | None = None,
        board: Board | None = None, policy: Policy | None = None,
        quotas: dict[str, int] | None = None, lead: bool = False,
    ) -> None:
        self.folder = Folder(eventlog, board or Board(),
                             dead_letter=jetstream_dead_letter(nc, "control"))
        self.api = ApiAgent(nc, eventlog, folder=self.folder, secure=secure, keyring=keyring)
        self.scheduler = SchedulerAgent(nc, eventlog, folder=self.folder, policy=policy,
                                        quotas=quotas, lead=lead)
        self.recovery = RecoveryAgent(
            nc, eventlog, heartbeat_interval=heartbeat_interval, misses=misses,
            folder=self.folder, lead=lead,
        )
        self.ready = self.api.ready

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.folder.run())
            tg.create_task(self.api.run())
            tg.create_task(self.scheduler.run())
            tg.create_task(self.recovery.run())
