"""An in-process DTF stack on its own nats-server, for integration tests.

Agents run as tasks in the test's event loop; tests that kill processes use subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from agents.auth.keyring import Keyring
from agents.control.api import ApiAgent
from agents.control.plane import ControlPlane
from agents.control.recovery import RecoveryAgent
from agents.control.scheduler import SchedulerAgent
from agents.host import settings
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer, free_port
from agents.wire.client import ApiClient
from agents.worker.agent import WorkerAgent
from dtf_core import subjects
from dtf_core.events.codec import Event, decode
from dtf_core.replies import TaskSummary
from projections.board import COMPACT_AFTER, Board
from tests.helpers import until

STOP_S = 10.0  # teardown never waits longer than this on one agent or connection


@dataclass
class Harness:
    server: NatsServer
    nc: Client
    api: ApiClient
    log: JetStreamLog
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    agents: dict[str, Any] = field(default_factory=dict)
    conns: list[Client] = field(default_factory=list)
    heartbeat: float = 1.0  # the interval recovery expects; workers default to it

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self, name: str, agent: Any, ready: asyncio.Event | None = None) -> Any:
        self.agents[name] = agent
        self.tasks[name] = asyncio.create_task(agent.run(), name=name)
        if ready is not None:
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({waiter, self.tasks[name]}, timeout=20,
                                         return_when=asyncio.FIRST_COMPLETED)
            if self.tasks[name] in done:
                self.tasks[name].result()  # raise the agent's error
            waiter.cancel()
            assert ready.is_set(), f"{name} did not become ready"
        return agent

    async def stop(self, name: str) -> None:
        task = self.tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), STOP_S)

    async def conn(self, name: str, credential: str | None = None,
                   worker_id: str | None = None) -> Client:
        """A connection; with a credential, in its own inbox (the api answers nowhere else)."""
        nc = await connect(self.url, name, credential=credential, worker_id=worker_id)
        self.conns.append(nc)
        return nc

    async def add_worker(self, worker_id: str, slots: int = 2, **kw: Any) -> WorkerAgent:
        kw.setdefault("heartbeat_interval", self.heartbeat)
        kw.setdefault("browsers", False)  # in-process workers: no Chromium beside the tests
        kw.setdefault("cache_dir", Path(settings.load().cache_dir))  # as `dtf worker` has it
        nc = await self.conn(worker_id, kw.get("credential"), worker_id)
        w = WorkerAgent(nc, worker_id=worker_id, slots=slots, **kw)
        await self.start(f"worker:{worker_id}", w, w.ready)
        return w

    async def events(self, task_id: str | None = None) -> list[tuple[int, Event]]:
        filters = [subjects.task_filter(task_id)] if task_id else [subjects.ALL_EVENTS]
        return [(r.seq, decode(r.subject, r.data)) for r in await self.log.read(filters)]

    async def wait_status(self, task_id: str, statuses: set[str] | frozenset[str],
                          timeout: float = 20) -> TaskSummary:
        rows: list[TaskSummary] = []

        async def reached() -> bool:
            rows[:] = await self.api.tasks(ids=[task_id])
            return rows[0].status in statuses

        await until(reached, timeout, f"{task_id} to reach {sorted(statuses)}")
        return rows[0]


@contextlib.asynccontextmanager
async def stack(
    tmp: Path,
    *,
    workers: int = 1,
    slots: int = 2,
    heartbeat: float = 0.2,
    misses: int = 3,
    recovery: bool = True,
    scheduler: bool = True,
    control: bool = False,
    keyring: Keyring | None = None,
    credential: str | None = None,
    compact_after: int | None = COMPACT_AFTER,
    browsers: bool = False,
) -> AsyncIterator[Harness]:
    """``keyring``: run the api secured (every request must carry a credential; the
    harness's own client presents ``credential``)."""
    server = NatsServer(store_dir=tmp / "nats", port=free_port())
    server.start()
    h: Harness | None = None
    try:
        nc = await connect(server.url, "test")
        await ensure_streams(nc.jetstream())
        h = Harness(server=server, nc=nc, api=ApiClient(nc, credential=credential),
                    log=JetStreamLog(nc), heartbeat=heartbeat)
        if control:  # api, scheduler and recovery in one process, sharing one fold
            ctl_nc = await h.conn("control")
            plane = ControlPlane(ctl_nc, JetStreamLog(ctl_nc), heartbeat_interval=heartbeat,
                                 misses=misses, board=Board(compact_after=compact_after))
            await h.start("control", plane, plane.ready)
            h.agents.update(api=plane.api, scheduler=plane.scheduler, recovery=plane.recovery)
            scheduler = recovery = False
        else:
            api = ApiAgent(await h.conn("api"), JetStreamLog(h.conns[-1]),
                           secure=keyring is not None, keyring=keyring)
            await h.start("api", api, api.ready)
        if scheduler:
            sched_nc = await h.conn("scheduler")
            await h.start("scheduler", SchedulerAgent(sched_nc, JetStreamLog(sched_nc)))
        if recovery:
            rec_nc = await h.conn("recovery")
            await h.start("recovery", RecoveryAgent(rec_nc, JetStreamLog(rec_nc),
                                                    heartbeat_interval=heartbeat, misses=misses))
        for i in range(1, workers + 1):
            await h.add_worker(f"w{i}", slots=slots, heartbeat_interval=heartbeat,
                               browsers=browsers)
        yield h
    finally:
        if h is not None:
            for name in reversed(list(h.tasks)):
                await h.stop(name)
            for c in [*h.conns, h.nc]:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.close(), STOP_S)
        server.stop()
