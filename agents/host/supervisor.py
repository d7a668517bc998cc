"""`dtf up`: nats-server plus every agent and local workers, supervised as one group.

Each agent is its own process (so they use every core and can be killed one by one). A
child that dies is restarted with a growing delay, and the restart is logged. Ctrl-C or
SIGTERM stops workers first (their running attempts are requeued), then the agents, then
the server: nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agents.auth.server_auth import server_config
from agents.control.bootstrap import Credentials, keys_dir, mint
from agents.host.children import Child, plan_children
from agents.host.servers import (
    bootstrap,
    claim_data_dir,
    cluster_servers,
    connect_when_admitted,
    keep_servers,
    own_server,
    until_ready,
)
from agents.nats.server import NatsServer, base_conf_text
from agents.nats.tls import TlsFiles, ensure_certs
from dtf_core.autoscale import parse_spec
from dtf_core.errors import DTFError

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 15.0


def _services(http: bool, autoscale: bool) -> list[str]:
    """The agents that get a credential of their own."""
    return ["control", "projector", *(["http"] if http else []),
            *(["autoscaler"] if autoscale else [])]


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
    http_port: int | None = None  # the REST API's (None: no HTTP agent)
    http_host: str = "127.0.0.1"
    autoscale: str | None = None  # local:MIN-MAX: an autoscaler of local workers
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
    def http_url(self) -> str | None:
        if self.http_port is None:
            return None
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}/"

    @property
    def replicas(self) -> int:
        return min(self.cluster, 3)

    @property
    def tls_ca(self) -> str | None:
        return str(self.tls_files.ca) if self.tls_files else None

    def plan(self, creds: Credentials | None) -> None:
        """The control plane (api + scheduler + recovery sharing one fold), the projector
        and the workers, each with its own credential file."""
        env = {"DTF_DATA_DIR": str(self.data_dir)}
        if self.tls_ca:
            env["DTF_TLS_CA"] = self.tls_ca
        if self.heartbeat_interval is not None:
            env["DTF_HEARTBEAT_INTERVAL"] = repr(self.heartbeat_interval)
        if self.heartbeat_misses is not None:
            env["DTF_HEARTBEAT_MISSES"] = str(self.heartbeat_misses)
        self.agents, self.worker_children = plan_children(
            self.data_dir, self.url, env, creds, standbys=self.cluster > 1,
            workers=self.workers, slots=self.slots, task_user=self.task_user,
            http=None if self.http_port is None else (self.http_host, self.http_port),
            autoscale=self.autoscale)
        self.creds = creds

    async def start(self) -> None:
        """Secure by default: the server admits no connection that the control plane's auth
        callout has not checked, so the control plane starts first; then `dtf up` records
        the credentials it issued, and starts the projector and the workers."""
        self._lock = await asyncio.to_thread(claim_data_dir, self.data_dir, self.url, None
                                             if self.http_port is None
                                             else (self.http_host, self.http_port))
        services = _services(self.http_port is not None, bool(self.autoscale))
        creds, issued = (None, []) if self.insecure else mint(
            self.data_dir, services=services,
            workers=[f"local-{i}" for i in range(1, self.workers + 1)],
            autoscale_group=parse_spec(self.autoscale)[0] if self.autoscale else "local",
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
            self.servers = cluster_servers(self.data_dir, base, nodes_n=self.cluster,
                                           host=self.host, port=self.port,
                                           insecure=self.insecure)
        else:
            self.servers = [own_server(store_dir=self.data_dir / "nats", port=self.port,
                                       conf=conf, host=self.host)]
        self.server = self.servers[0]
        for server in self.servers:
            await asyncio.to_thread(server.start)
        self.plan(creds)
        controls = [c for c in self.agents if c.name.startswith("control")]
        for control in controls:
            await control.start()
        admin = creds.admin.read_text().strip() if creds else None
        await bootstrap(lambda: connect_when_admitted(
            self.url, admin, self.tls_ca, alive=self._check_alive, logs=self.data_dir / "logs"),
            self.replicas, self.data_dir, issued)
        for child in [*self.agents, *self.worker_children]:
            if child not in controls:
                await child.start()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready when the api answers, every local worker is registered and the projector
        has caught up."""
        admin = self.creds.admin.read_text().strip() if self.creds else None
        await until_ready(self.url, admin, self.tls_ca, workers=self.workers,
                          alive=self._check_alive, logs=self.data_dir / "logs",
                          timeout=timeout, http=self.http_url)

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
            tg.create_task(keep_servers(stack.servers))
            await stack.wait_ready()
            if callable(on_ready):
                on_ready(stack)
    finally:
        await asyncio.shield(stack.stop())
