"""Starting `dtf up`'s servers and streams: a local cluster's nodes, the streams (once a
new cluster accepts them), the credentials' events, and the lock on the data dir."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import nats.errors

from agents.auth.server_auth import server_config
from agents.control.bootstrap import keys_dir, record
from agents.http.app import bind
from agents.log.jetstream import JetStreamLog
from agents.nats.cluster import local_nodes, node_conf, store_dir
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer
from agents.nats.tls import ensure_certs
from agents.proc.files import try_lock
from agents.proc.tree import spawning_daemon
from agents.wire.client import ApiClient
from agents.wire.projector import projector_status
from dtf_core import subjects
from dtf_core.errors import DTFError, InvalidInput, Unavailable

log = logging.getLogger(__name__)


async def record_credentials(nc: Any, data_dir: Path, issued: list[Any],
                             timeout: float = 30.0) -> None:
    """Append the credentials' events; again while a new cluster settles (the events
    have deterministic message ids, so a resend is dropped as a duplicate)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await record(JetStreamLog(nc), data_dir, issued)
            return
        except Unavailable as exc:
            if nc.is_closed:
                raise lost(nc) from None
            if time.monotonic() > deadline:
                raise
            log.info("recording the credentials again: %s", exc)
            await asyncio.sleep(0.25)
        except nats.errors.Error:
            if nc.is_closed:
                raise lost(nc) from None
            raise


def cluster_servers(data_dir: Path, base: str, *, nodes_n: int, host: str, port: int,
                    insecure: bool) -> list[NatsServer]:
    """One node per store, routes mutual TLS with a CA made once in the data dir."""
    route_tls = ensure_certs(data_dir / "tls-routes", hosts=[host])
    nodes = local_nodes(nodes_n, host, port)
    servers = []
    for node in nodes:
        text = node_conf(base, node, nodes, tls=route_tls)
        path = data_dir / f"{node.name}.conf"
        if insecure:
            path.write_text(text)
        else:  # plus the auth callout block, written 0600
            path = server_config(text, keys_dir(data_dir), path)
        servers.append(own_server(store_dir=store_dir(data_dir, node),
                                  port=node.client_port, conf=path, host=host))
    return servers


def own_server(*, store_dir: Path, port: int, conf: Path | None, host: str) -> NatsServer:
    """A nats-server of `dtf up`'s, which dies with it (Linux)."""
    return NatsServer(store_dir=store_dir, port=port, conf=conf, host=host,
                      popen_options=dict(spawning_daemon().kwargs()))


async def keep_servers(servers: list[NatsServer]) -> None:
    """Start again a nats-server that exits, on its own store (the log is kept), with a
    delay that grows while it keeps failing; until cancelled."""
    async def keep(server: NatsServer) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            if server.proc is not None:
                code = await asyncio.to_thread(server.proc.wait)
                log.warning("nats-server %s exited with code %s; starting it again",
                            server.url, code)
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            await asyncio.sleep(min(0.5 * 2 ** max(failures - 1, 0), 30.0))
            try:
                await asyncio.to_thread(server.start)
            except DTFError as exc:
                log.error("nats-server %s did not start: %s", server.url, exc)
                server.proc = None
                continue
            log.info("nats-server %s started again (pid %s)", server.url,
                     server.proc.pid if server.proc else "?")

    await asyncio.gather(*(keep(s) for s in servers))


class ConnectionLost(Unavailable):
    """`dtf up`'s own connection was closed for good while it set the stack up."""


def lost(nc: Any) -> ConnectionLost:
    said = "; ".join(getattr(nc, "server_errors", ())[-3:]) or "nothing"
    return ConnectionLost(f"dtf up's connection was closed ({nc.last_error!r}; the server "
                          f"said: {said})")


async def bootstrap(connect_admitted: Callable[[], Awaitable[Any]], replicas: int,
                    data_dir: Path, issued: list[Any], *, attempts: int = 3) -> None:
    """Create the streams, then record the credentials' events, on a connection of its
    own; a connection closed meanwhile (by the server, on a node's restart) is opened
    again instead of being retried until the deadline."""
    for attempt in range(1, attempts + 1):
        nc = await connect_admitted()
        try:
            await streams_ready(nc, replicas)
            if issued:
                await record_credentials(nc, data_dir, issued)
            return
        except ConnectionLost as exc:
            if attempt == attempts:
                raise
            log.warning("%s; connecting again", exc)
        finally:
            await nc.close()


async def streams_ready(nc: Any, replicas: int, timeout: float = 30.0) -> None:
    """Create the streams; a new cluster refuses R3 until it has elected a meta leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_streams(nc.jetstream(), replicas=replicas)
            await leaders_elected(nc, replicas)
            return
        except Exception as exc:  # no meta leader yet, or peers still joining
            if nc.is_closed:
                raise lost(nc) from None
            if time.monotonic() > deadline:
                raise DTFError(f"could not create the streams in {timeout:.0f}s: "
                               f"{exc!r}") from None
            log.info("waiting for the cluster to accept streams: %r", exc)
            await asyncio.sleep(0.25)


async def leaders_elected(nc: Any, replicas: int) -> None:
    """A replicated stream takes appends once its group has a leader; until then a
    publish times out. Raises (to be retried) while any stream has none."""
    if replicas == 1:
        return
    js = nc.jetstream()
    for name in (subjects.EVENTS_STREAM, subjects.HEARTBEATS_STREAM, subjects.LOGS_STREAM,
                 subjects.DLQ_STREAM):
        info = await js.stream_info(name)
        if info.cluster is None or not info.cluster.leader:
            raise Unavailable(f"stream {name} has no leader yet")


def lock_data_dir(data_dir: Path, url: str) -> IO[str]:
    """One stack per data dir: a second nats-server on the same JetStream store risks
    corrupting it. The lock is held while the returned file is open; it says who."""
    lock = open(data_dir / "up.lock", "a+")
    if not try_lock(lock):
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise InvalidInput(f"{data_dir} is in use by a running dtf up ({holder}); "
                           "stop it first, or use another --data-dir") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, {url}\n")
    lock.flush()
    return lock


def claim_data_dir(data_dir: Path, url: str, http: tuple[str, int] | None) -> IO[str]:
    """The data dir's lock, with the REST API's port checked free. A stack running on the
    dir is said first (the port is taken too, by it); nothing is made while the port is
    taken."""
    lock = lock_data_dir(data_dir, url) if data_dir.is_dir() else None
    try:
        if http is not None:
            port_free(*http)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.chmod(0o700)  # an existing one too: credentials and keys live here
        return lock or lock_data_dir(data_dir, url)
    except BaseException:
        if lock is not None:
            lock.close()
        raise


async def connect_when_admitted(url: str, credential: str | None, tls_ca: str | None, *,
                                alive: Callable[[], None], logs: Path,
                                timeout: float = 30.0) -> Any:
    """Connect once the control plane's auth callout admits us; ``alive`` raises when
    the servers are gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(url, "dtf-up", credential=credential, tls_ca=tls_ca)
        except DTFError as exc:
            alive()
            if time.monotonic() > deadline:
                raise DTFError(f"the control plane did not admit dtf up in {timeout:.0f}s "
                               f"({exc}); see {logs}") from None
            await asyncio.sleep(0.1)


def port_free(host: str, port: int) -> None:
    """Raise a clear error when ``host:port`` cannot be listened on."""
    bind(host, port).close()


def http_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "health", timeout=1.0) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


async def until_ready(url: str, admin: str | None, tls_ca: str | None, *, workers: int,
                      alive: Callable[[], None], logs: Path, timeout: float = 60.0,
                      http: str | None = None) -> None:
    """Until the api answers, ``workers`` local workers are registered, the projector
    has caught up and the HTTP agent (at ``http``) answers; ``alive`` raises when the
    servers are gone."""
    nc = await connect(url, "dtf-up-probe", credential=admin, tls_ca=tls_ca)
    api = ApiClient(nc, timeout=2.0, credential=admin)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                status = await api.status()
                ours = [w for w in await api.workers()
                        if w.state == "alive" and w.id.startswith("local-")]
                proj = await projector_status(nc)
                if len(ours) >= workers and isinstance(proj.last_seq, int) and status and (
                        http is None or await asyncio.to_thread(http_healthy, http)):
                    return
            except Exception as exc:  # not up yet: any failure means "wait"
                log.debug("not ready yet: %s", exc)
            alive()
            if time.monotonic() > deadline:
                raise DTFError(f"the stack did not become ready in {timeout:.0f}s; "
                               f"see {logs}")
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
