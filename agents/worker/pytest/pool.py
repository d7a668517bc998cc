"""Pytest fork servers, one per session key on a host, shared by its workers.

A server (``session.py``) collects the tests once; each chunk runs in a child forked from
it, so a run never sees what another run (or chunk) left behind, and a new run of unchanged
code pays no interpreter start and no collection. The key is how pytest runs (the
directory, its arguments, its environment); a server is reused while every file its
collection read is unchanged (``freshness.py``) and it collected what the run's plan was
made from.

Every worker on the host uses the same server for a key (one collection, one copy of the
collected tests in memory): it listens on a unix socket named by the key, workers attach
to it, and it ends when the last one detaches. The first worker to need it starts it,
under a lock the others wait on. A chunk is a connection on which its child writes.

A chunk whose child dies (a segfault, ``os._exit``) fails the test it was running; the
rest of the chunk goes on in a new child. Cancelling a chunk kills its child and whatever
its tests started; the server lives on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.proc.files import account_tag
from agents.worker.pytest.freshness import changed
from agents.worker.pytest.server import OnCase, Server, SessionFailed, SessionSpec, exit_status
from agents.worker.pytest.spares import SlotNumbers, Spares, host_lock
from agents.worker.runner import TaskUser
from dtf_core.events.tests import TestCase

log = logging.getLogger(__name__)

MAX_SERVERS = 2  # fork servers kept per worker (each holds a whole collection)
IDLE_CLOSE_S = 1800.0
SOCKETS = Path(tempfile.gettempdir()) / f"dtf-sessions-{account_tag()}"


def session_env(base: dict[str, str], spec: SessionSpec) -> dict[str, str]:
    """The session's environment: a task's (the worker's, without DTF's own settings and
    credentials), with the submitter's pytest settings."""
    env = {k: v for k, v in base.items() if not k.startswith("DTF_")}
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)  # the submitter's own, from the spec, or none
    env.update(dict(spec.env))
    if env.get("PYTHONPATH") == "":  # the submitter had none
        del env["PYTHONPATH"]
    return env


@dataclass
class SessionPool:
    """The fork servers this worker uses, by session key (see the module's doc)."""

    log_dir: Path
    worker_id: str = "worker"
    servers: dict[str, Server] = field(default_factory=dict)
    starting: dict[str, asyncio.Task[Server]] = field(default_factory=dict)
    slots: SlotNumbers = field(default_factory=SlotNumbers)
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    user: TaskUser | None = None  # sessions run as this account (--task-user)
    preparing: set[asyncio.Task[Server]] = field(default_factory=set)
    sockets: Path = SOCKETS

    def __post_init__(self) -> None:
        if self.user is not None:
            u = self.user
            self.base_env = {**self.base_env, "HOME": u.home, "USER": u.name, "LOGNAME": u.name}
            self.sockets = SOCKETS.with_name(f"dtf-sessions-{u.uid}")
        self.spares = Spares(self.log_dir, lambda: session_env(
            self.base_env, SessionSpec(cwd="", args=())), self.user)

    async def run_chunk(self, spec: SessionSpec, node_ids: list[str], on_case: OnCase,
                        *, run_id: str = "", workers: int = 1,
                        collection: str = "") -> list[dict[str, str]]:
        """Run ``node_ids``; every one of them gets exactly one case. Returns the
        collection errors the session saw. ``collection``: the digest of what the
        submitter collected; a session that collected something else is replaced once."""
        remaining = list(node_ids)
        errors: list[dict[str, str]] = []
        slot = self.slots.take()
        try:
            while remaining:
                server = await self._server(spec, collection)
                errors = server.errors
                seen: set[str] = set()

                async def record(case: TestCase, seen: set[str] = seen) -> None:
                    seen.add(case.nodeid)
                    result = on_case(case)
                    if result is not None:
                        await result

                child_env = {"workerid": f"gw{slot}", "workercount": workers,
                             "testrunuid": run_id}
                end = await server.run(remaining, record, child_env)
                if end.ended:
                    break
                crashed = end.running
                if crashed is not None:
                    await record(TestCase(
                        nodeid=crashed, outcome="crashed",
                        message=(f"the pytest process died ({exit_status(end.status)}) while "
                                 "running this test; the rest of the chunk ran in a new "
                                 "process")))
                elif not seen:
                    raise SessionFailed(
                        f"the pytest process for this chunk died ({exit_status(end.status)}) "
                        "before running any test", 3)
                remaining = [n for n in remaining if n not in seen]
        finally:
            self.slots.give_back(slot)
        trim(self.servers)
        return errors

    def prepare(self, spec: SessionSpec) -> None:
        """Start the session for ``spec`` now, if it is not there: it collects while the
        chunk waits for its tests. Its failure, if any, is raised to the chunk that runs."""
        task = asyncio.ensure_future(self._server(spec))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.preparing.add(task)
        task.add_done_callback(self.preparing.discard)

    async def _server(self, spec: SessionSpec, collection: str = "") -> Server:
        env = session_env(self.base_env, spec)
        key = spec.key(env)
        server = self.servers.get(key)
        if server is not None:
            if await self._usable(server, collection):
                return server
            self.servers.pop(key, None)
        task = self.starting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._find_or_start(spec, env, key, collection))
            self.starting[key] = task
            task.add_done_callback(lambda _t: self.starting.pop(key, None))
        server = await asyncio.shield(task)
        self.servers[key] = server
        if collection and collection not in server.accepted and server.fresh:
            server.accept(collection)  # it has just collected: what it has is what there is
        server.fresh = False
        return server

    async def _usable(self, server: Server, collection: str) -> bool:
        stale = None if server.alive else "it ended"
        if stale is None:
            stale = await asyncio.to_thread(changed, server.deps)
        if stale is None and collection and collection not in server.accepted \
                and not server.fresh:
            stale = "the tests the run collected"
        if stale is None:
            return True
        log.info("pytest session %s is stale (%s changed); starting a new one", server.pid,
                 stale)
        server.retire()
        server.detach()
        return False

    async def _find_or_start(self, spec: SessionSpec, env: dict[str, str], key: str,
                             collection: str) -> Server:
        """The host's server for ``key``: another worker's, or one started now. Under the
        key's lock, so that the workers of a host collect once between them."""
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.user is not None and self.sockets.stat().st_uid != self.user.uid:
            self.user.own(self.sockets)  # its server binds there
        path = self.sockets / f"{key}.sock"
        async with host_lock(self.sockets / f"{key}.lock"):
            server = await Server.attach(path)
            if server is not None and not await self._usable(server, collection):
                server = None
            if server is None:
                server = await self._start(spec, env, path, collection)
            return server

    async def _start(self, spec: SessionSpec, env: dict[str, str], path: Path,
                     collection: str) -> Server:
        spare = await self.spares.take(env)
        setup = {"args": list(spec.args), "cwd": spec.cwd, "env": env,
                 "path0": spec.cwd if spec.path0 else None, "markup": spec.markup,
                 "highlight": spec.highlight, "width": spec.width, "socket": str(path),
                 "accepted": [collection] if collection else [],
                 "workerinput": {"workerid": "gw0", "workercount": 1, "testrunuid": "",
                                 "mainargv": [sys.executable, "-m", "pytest"], "dtf": True,
                                 "dtf_worker": self.worker_id}}
        ready = await spare.start(spec, setup)
        server = await Server.attach(path)
        if server is None:
            raise SessionFailed(f"the pytest session {ready.ready} started but does not "
                                f"answer on {path}", 3)
        server.fresh = True
        log.info("pytest session %s ready in %s: %d tests collected", spare.proc.pid,
                 spec.cwd, ready.ready or 0)
        return server

    async def close(self) -> None:
        for task in [*self.starting.values(), *self.preparing]:
            task.cancel()
        for server in self.servers.values():
            server.detach()
        self.servers.clear()
        self.spares.close()


def trim(servers: dict[str, Server]) -> None:
    """Let go of servers this worker has not used for a while (one no worker uses ends),
    and of all but the most recent few."""
    now = time.monotonic()
    for key, server in list(servers.items()):
        if not server.alive or (not server.running and now - server.used > IDLE_CLOSE_S):
            servers.pop(key).detach()
    idle = sorted((s.used, k) for k, s in servers.items() if not s.running)
    while len(servers) > MAX_SERVERS and idle:
        _, key = idle.pop(0)
        servers.pop(key).detach()
