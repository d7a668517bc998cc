"""`dtf up`: nats-server plus every agent and local workers, supervised as one group.

Each agent is its own process (so they use every core and can be killed one by one). A
child that dies is restarted with a growing delay, and the restart is logged. Ctrl-C or
SIGTERM stops workers first (their running attempts are requeued), then the agents, then
the server: nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agents.auth.server_auth import server_config
from agents.control.bootstrap import Credentials, keys_dir, mint, record
from agents.log.jetstream import JetStreamLog
from agents.nats.cluster import local_nodes, node_conf, store_dir
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer, base_conf_text
from agents.nats.tls import TlsFiles, ensure_certs
from agents.wire.client import ApiClient
from agents.wire.projector import projector_status
from dtf_core import subjects
from dtf_core.errors import DTFError, InvalidInput, Unavailable

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env} if self.env else None
        with open(self.log_path, "ab") as out:  # noqa: ASYNC230 (a short, local open)
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, env=env,
            )
        self.started_at = time.monotonic()

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@dataclass
class Stack:
    data_dir: Path
    port: int = 4222
    workers: int = 1
    slots: int | None = None
    insecure: bool = False
    host: str = "127.0.0.1"
    tls: bool = False
    cluster: int = 1  # nodes; >1: a local cluster, R<n> streams, two of every agent
    task_user: str | None = None  # local workers run tasks as this account
    heartbeat_interval: float | None = None  # given to every child (else their default)
    heartbeat_misses: int | None = None
    _lock: IO[str] | None = field(default=None, repr=False)  # on the data dir, held while up
    server: NatsServer | None = None  # the first node
    servers: list[NatsServer] = field(default_factory=list)
    tls_files: TlsFiles | None = None
    agents: list[Child] = field(default_factory=list)
    worker_children: list[Child] = field(default_factory=list)
    creds: Credentials | None = None

    @property
    def url(self) -> str:
        """Every node's address, comma-separated: clients connect to any that answers."""
        local = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        scheme = "tls" if self.tls else "nats"
        return ",".join(f"{scheme}://{local}:{self.port + i}" for i in range(self.cluster))

    @property
    def replicas(self) -> int:
        return min(self.cluster, 3)

    @property
    def tls_ca(self) -> str | None:
        return str(self.tls_files.ca) if self.tls_files else None

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", *args, "--server", self.url]

    def plan(self, creds: Credentials | None) -> None:
        """The control plane (api + scheduler + recovery sharing one fold), the projector
        and the workers, each with its own credential file."""
        logs = self.data_dir / "logs"
        db = str(self.data_dir / "dtf.duckdb")
        security = ["--insecure-dev"] if creds is None else [
            "--keys", str(keys_dir(self.data_dir))]
        self.agents = [
            Child("control", self._argv("agent", "control", *security), logs / "control.log"),
            Child("projector", self._argv("agent", "projector", "--db", db),
                  logs / "projector.log"),
        ]
        if self.cluster > 1:  # a standby of each; the projector's keeps its own DuckDB file
            self.agents += [
                Child("control-2", self._argv("agent", "control", *security),
                      logs / "control-2.log"),
                Child("projector-2", self._argv(
                    "agent", "projector", "--db", str(self.data_dir / "dtf-2.duckdb")),
                    logs / "projector-2.log"),
            ]
        slots = ["--slots", str(self.slots)] if self.slots else []
        if self.task_user:
            slots += ["--task-user", self.task_user]
        self.worker_children = [
            Child(f"worker-{i}", self._argv("worker", "--id", f"local-{i}", *slots),
                  logs / f"worker-{i}.log")
            for i in range(1, self.workers + 1)
        ]
        for child in [*self.agents, *self.worker_children]:
            child.env = {"DTF_DATA_DIR": str(self.data_dir)}
            if self.tls_ca:
                child.env["DTF_TLS_CA"] = self.tls_ca
            if self.heartbeat_interval is not None:
                child.env["DTF_HEARTBEAT_INTERVAL"] = repr(self.heartbeat_interval)
            if self.heartbeat_misses is not None:
                child.env["DTF_HEARTBEAT_MISSES"] = str(self.heartbeat_misses)
        if creds is not None:
            for child in self.agents:
                role = child.name.split("-")[0]
                child.env["DTF_TOKEN_FILE"] = str(creds.files[f"agent-{role}"])
            for i, child in enumerate(self.worker_children, start=1):
                child.env["DTF_TOKEN_FILE"] = str(creds.files[f"local-{i}"])
        self.creds = creds

    async def start(self) -> None:
        """Secure by default: the server admits no connection that the control plane's auth
        callout has not checked, so the control plane starts first; then `dtf up` records
        the credentials it issued, and starts the projector and the workers."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # an existing one too: credentials and keys live here
        self._lock_data_dir()
        store = self.data_dir / "nats"
        creds, issued = (None, []) if self.insecure else mint(
            self.data_dir, services=["control", "projector"],
            workers=[f"local-{i}" for i in range(1, self.workers + 1)],
        )
        base = base_conf_text()
        if self.tls:
            self.tls_files = ensure_certs(self.data_dir / "tls", hosts=[self.host])
            base += "\n" + self.tls_files.server_block()
        conf = server_config(base, keys_dir(self.data_dir), self.data_dir / "nats-server.conf"
                             ) if not self.insecure else None
        if conf is None and self.tls:
            conf = self.data_dir / "nats-server.conf"
            conf.unlink(missing_ok=True)
            conf.write_text(base)
        if self.cluster > 1:
            self.servers = self._cluster_servers(base)
        else:
            self.servers = [NatsServer(store_dir=store, port=self.port, conf=conf,
                                       host=self.host)]
        self.server = self.servers[0]
        for server in self.servers:
            await asyncio.to_thread(server.start)
        self.plan(creds)
        controls = [c for c in self.agents if c.name.startswith("control")]
        for control in controls:
            await control.start()
        nc = await self._connect_when_admitted(creds)
        try:
            await self._ensure_streams(nc)
            if creds is not None:
                await self._record(nc, issued)
        finally:
            await nc.close()
        for child in [*self.agents, *self.worker_children]:
            if child not in controls:
                await child.start()

    async def _record(self, nc: Any, issued: list[Any], timeout: float = 30.0) -> None:
        """Append the credentials' events; again while a new cluster settles (the events
        have deterministic message ids, so a resend is dropped as a duplicate)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await record(JetStreamLog(nc), self.data_dir, issued)
                return
            except Unavailable as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("recording the credentials again: %s", exc)
                await asyncio.sleep(0.25)

    def _cluster_servers(self, base: str) -> list[NatsServer]:
        """One node per store, routes mutual TLS with a CA made once in the data dir."""
        route_tls = ensure_certs(self.data_dir / "tls-routes", hosts=[self.host])
        nodes = local_nodes(self.cluster, self.host, self.port)
        servers = []
        for node in nodes:
            text = node_conf(base, node, nodes, tls=route_tls)
            path = self.data_dir / f"{node.name}.conf"
            if self.insecure:
                path.write_text(text)
            else:  # plus the auth callout block, written 0600
                path = server_config(text, keys_dir(self.data_dir), path)
            servers.append(NatsServer(store_dir=store_dir(self.data_dir, node),
                                      port=node.client_port, conf=path, host=self.host))
        return servers

    async def _ensure_streams(self, nc: Any, timeout: float = 30.0) -> None:
        """Create the streams; a new cluster refuses R3 until it has elected a meta leader."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await ensure_streams(nc.jetstream(), replicas=self.replicas)
                await self._leaders_elected(nc)
                return
            except Exception as exc:  # no meta leader yet, or peers still joining
                if time.monotonic() > deadline:
                    raise DTFError(f"could not create the streams in {timeout:.0f}s: "
                                   f"{exc!r}") from None
                log.info("waiting for the cluster to accept streams: %r", exc)
                await asyncio.sleep(0.25)

    async def _leaders_elected(self, nc: Any) -> None:
        """A replicated stream takes appends once its group has a leader; until then a
        publish times out. Raises (to be retried) while any stream has none."""
        if self.replicas == 1:
            return
        js = nc.jetstream()
        for name in (subjects.EVENTS_STREAM, subjects.HEARTBEATS_STREAM, subjects.LOGS_STREAM,
                     subjects.DLQ_STREAM):
            info = await js.stream_info(name)
            if info.cluster is None or not info.cluster.leader:
                raise Unavailable(f"stream {name} has no leader yet")

    async def _connect_when_admitted(self, creds: Credentials | None,
                                     timeout: float = 30.0) -> Any:
        credential = creds.admin.read_text().strip() if creds else None
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await connect(self.url, "dtf-up", credential=credential,
                                     tls_ca=self.tls_ca)
            except DTFError as exc:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise DTFError(f"the control plane did not admit dtf up in {timeout:.0f}s "
                                   f"({exc}); see {self.data_dir / 'logs'}") from None
                await asyncio.sleep(0.1)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready when the api answers, every local worker is registered and the projector
        has caught up."""
        admin = self.creds.admin.read_text().strip() if self.creds else None
        nc = await connect(self.url, "dtf-up-probe", credential=admin, tls_ca=self.tls_ca)
        api = ApiClient(nc, timeout=2.0, credential=admin)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    status = await api.status()
                    ours = [w for w in await api.workers()
                            if w.state == "alive" and w.id.startswith("local-")]
                    proj = await projector_status(nc)
                    if len(ours) >= self.workers and isinstance(proj.last_seq, int) and status:
                        return
                except (DTFError, Exception) as exc:  # not up yet: any failure means "wait"
                    log.debug("not ready yet: %s", exc)
                self._check_alive()
                if time.monotonic() > deadline:
                    raise DTFError(f"the stack did not become ready in {timeout:.0f}s; "
                                   f"see {self.data_dir / 'logs'}")
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    def _check_alive(self) -> None:
        """A cluster carries on while a node is down; a stack with no server left cannot."""
        if self.servers and all(s.proc is not None and s.proc.poll() is not None
                                for s in self.servers):
            raise DTFError("nats-server exited; see " + str(self.data_dir / "nats"))

    async def supervise(self) -> None:
        """Restart any child that exits, with a delay that grows while it keeps failing."""
        while True:
            children = [*self.agents, *self.worker_children]
            waits = {asyncio.ensure_future(c.proc.wait()): c for c in children if c.proc}
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                fut.cancel()
            for fut in done:
                child = waits[fut]
                code = fut.result()
                ran = time.monotonic() - child.started_at
                child.restarts = 0 if ran > 60 else child.restarts + 1
                delay = min(0.5 * 2 ** max(child.restarts - 1, 0), 30.0)
                log.warning("%s exited with code %s after %.1fs; restarting in %.1fs "
                            "(restart %d)", child.name, code, ran, delay, child.restarts)
                await asyncio.sleep(delay)
                await child.start()
                log.info("%s restarted (pid %s)", child.name, child.proc.pid if child.proc else "?")

    def _lock_data_dir(self) -> None:
        """One stack per data dir: a second nats-server on the same JetStream store risks
        corrupting it. The lock is held while this process lives; the file says who."""
        lock = open(self.data_dir / "up.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise InvalidInput(f"{self.data_dir} is in use by a running dtf up ({holder}); "
                               "stop it first, or use another --data-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, {self.url}\n")
        lock.flush()
        self._lock = lock

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.worker_children))
        await asyncio.gather(*(c.stop() for c in self.agents))
        for server in self.servers:
            await asyncio.to_thread(server.stop)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


async def up(stack: Stack, on_ready: object = None) -> None:
    """Run the stack until cancelled; ``on_ready`` is called once everything is up."""
    try:
        await stack.start()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(stack.supervise())
            await stack.wait_ready()
            if callable(on_ready):
                on_ready(stack)
    finally:
        await asyncio.shield(stack.stop())
