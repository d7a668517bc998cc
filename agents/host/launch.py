"""Running one agent process: connect, make sure the streams exist, run until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from agents.auth.apikeys import PREFIX as API_KEY_PREFIX
from agents.auth.keyring import Keyring
from agents.auth.server_auth import issuer_file, unverified_claims
from agents.control import faults
from agents.host.settings import Settings, credential, tls_ca
from agents.host.settings import credential as settings_credential
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect, ensure_streams
from agents.proc.signals import on_stop_signals
from agents.proc.tree import lower_priority
from dtf_core.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)
CLOSE_WAIT_S = 5.0  # draining a connection at exit: bounded
PROJECTOR_NICE = 10
AGENT_KINDS = ("api", "scheduler", "recovery", "projector", "control")


async def run_until_signal(main: Callable[[], Awaitable[Any]],
                           *conns: Client) -> None:
    """Run ``main``; SIGINT/SIGTERM cancel it so its cleanup runs. If the server closes one
    of ``conns`` for good (a revoked or refused credential), stop with a clear error so a
    supervisor can restart the process."""
    # What start-up made (modules, the connection, the agent) lives as long as the process:
    # frozen, out of the collector's sight, so that a full collection scans only what came
    # after (docs/performance.md: pauses of 100 to 440 ms became 24 to 36 ms).
    gc.freeze()
    task = asyncio.ensure_future(main())
    on_stop_signals(asyncio.get_running_loop(), task.cancel)
    watchers = [asyncio.ensure_future(nc.gone.wait()) for nc in conns if hasattr(nc, "gone")]
    try:
        done, _ = await asyncio.wait({task, *watchers}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            errors = [e for nc in conns for e in getattr(nc, "server_errors", [])]
            raise Unavailable("the NATS connection was closed for good"
                              + (f": {errors[-1]}" if errors else ""))
        await task
    except asyncio.CancelledError:
        log.info("stopped by signal")
    finally:
        for w in watchers:
            w.cancel()


async def _close(nc: Client) -> None:
    """Flush what is pending, then close; a connection already lost (the server is gone)
    has nothing left to flush, and closing it must not fail the agent's exit."""
    try:
        async with asyncio.timeout(CLOSE_WAIT_S):
            await nc.drain()
    except Exception:  # already closed or reconnecting: close is all that is left
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await nc.close()


async def _connected(settings: Settings, name: str, *, streams: bool = True,
                     worker_id: str | None = None, cred: str | None = None) -> Client:
    nc = await connect(settings.server, name, credential=cred or credential(settings),
                       worker_id=worker_id, tls_ca=tls_ca(settings))
    if streams:
        # a cluster made by an orchestrator (compose, Kubernetes) has no `dtf up` to create
        # the streams with R3 first: the first agent to start does, with DTF_STREAM_REPLICAS
        await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas)
    return nc


def _keyring(keys_dir: str | None, settings: Settings) -> Keyring | None:
    """The signing keys, where this host has them (only needed to issue tokens)."""
    path = Path(keys_dir) if keys_dir else Path(settings.data_dir) / "keys"
    if keys_dir is None and not path.exists():
        return None
    return Keyring.load(path)


async def run_agent(
    kind: str, settings: Settings, *, db_path: str | None = None, keys_dir: str | None = None,
    insecure: bool = False,
) -> None:
    secure = not insecure
    faults.arm(settings.faults, settings.data_dir)
    keyring = _keyring(keys_dir, settings) if secure and kind in ("api", "control") else None
    if kind == "control" and secure and keyring is not None and \
            issuer_file(keyring.path.parent).exists():
        await run_control_with_callout(settings, keyring)
        return
    nc = await _connected(settings, f"dtf-{kind}")
    conns = [nc]
    eventlog = JetStreamLog(nc)
    agent: Any
    try:
        if kind == "api":
            from agents.control.api import ApiAgent

            agent = ApiAgent(nc, eventlog, secure=secure, keyring=keyring)
        elif kind == "scheduler":
            from agents.control.scheduler import SchedulerAgent

            agent = SchedulerAgent(nc, eventlog, policy=_policy(settings),
                                   quotas=settings.quotas, lead=settings.lead)
        elif kind == "recovery":
            from agents.control.recovery import RecoveryAgent

            agent = RecoveryAgent(
                nc, eventlog, heartbeat_interval=settings.heartbeat_interval,
                misses=settings.heartbeat_misses, lead=settings.lead,
            )
        elif kind == "control":
            from agents.control.plane import ControlPlane

            agent = ControlPlane(
                nc, eventlog, heartbeat_interval=settings.heartbeat_interval,
                misses=settings.heartbeat_misses, secure=secure, keyring=keyring,
                policy=_policy(settings), quotas=settings.quotas, lead=settings.lead,
            )
        elif kind == "projector":
            from agents.control.projector import ProjectorAgent

            # Analytics, not the critical path: on a host that also runs tests, the tests
            # and the control plane come first and the projection catches up after.
            lower_priority(PROJECTOR_NICE)
            db = db_path or str(Path(settings.data_dir) / "dtf.duckdb")
            # the log's tail on a connection of its own, left unread between paced writes
            tail_nc = await _connected(settings, "dtf-projector-tail", streams=False)
            conns.append(tail_nc)
            agent = ProjectorAgent(nc, eventlog, db, tail_nc=tail_nc)
        else:
            raise ValueError(f"unknown agent {kind!r}")
        await run_until_signal(agent.run, *conns)
    finally:
        for conn in reversed(conns):
            await asyncio.shield(_close(conn))


async def run_control_with_callout(settings: Settings, keyring: Keyring) -> None:
    """The control plane that also answers the server's auth callout: it connects as the
    auth user first (nobody else can connect before the callout answers), then as itself."""
    from agents.auth.gate import Gate
    from agents.auth.server_auth import AUTH_USER, callout_secrets, kick_revoked, make_callout
    from agents.control.plane import ControlPlane
    from projections.board import Board

    issuer, password = callout_secrets(keyring.path.parent)
    sys_nc = await connect(settings.server, "dtf-auth-callout", user=AUTH_USER,
                           password=password, tls_ca=tls_ca(settings))
    board = Board()
    gate = Gate(board, keyring=keyring)
    folded = asyncio.Event()
    callout = make_callout(gate, issuer, folded)
    await callout.start(sys_nc)
    nc = await _connected(settings, "dtf-control")
    try:
        plane = ControlPlane(nc, JetStreamLog(nc), heartbeat_interval=settings.heartbeat_interval,
                             misses=settings.heartbeat_misses, secure=True, keyring=keyring,
                             board=board, policy=_policy(settings), quotas=settings.quotas,
                             lead=settings.lead)

        async def on_batch(events: list[Any]) -> None:
            if any(type(e).__name__ in ("TokenRevoked", "ApiKeyRevoked") for _, e in events):
                closed = await kick_revoked(callout, gate, sys_nc)
                log.info("revocation: closed %d connection(s)", closed)

        plane.folder.listeners.append(on_batch)

        async def run() -> None:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(plane.run())
                await plane.folder.caught_up.wait()
                folded.set()
                await kick_revoked(callout, gate, sys_nc)  # admitted before the fold knew

        await run_until_signal(run, nc, sys_nc)
    finally:
        await asyncio.shield(_close(nc))
        await asyncio.shield(_close(sys_nc))


async def run_http(settings: Settings, *, host: str, port: int, insecure: bool) -> None:
    """The REST API: every request goes to the api under the caller's own credential; the
    agent's own connection (a reader's) only says whether NATS is there (``/health``)."""
    from agents.http.app import bind, build_app, serve
    from agents.http.live import Feed, follow
    from agents.http.metrics import Metrics
    from agents.http.pool import ClientPool
    from agents.wire.client import ApiClient

    sock = bind(host, port)
    pool = ClientPool(settings.server, tls_ca(settings))
    try:
        nc = await _connected(settings, "dtf-http", streams=False)
        try:
            feed = Feed(ApiClient(nc, credential=credential(settings)), Metrics())
            app = build_app(pool, secure=not insecure, own=nc, feed=feed)
            log.info("REST API at http://%s:%d/", host, port)

            async def main() -> None:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(follow(feed))
                    await serve(app, sock)

            await run_until_signal(main, nc)
        finally:
            await pool.close()
            await asyncio.shield(_close(nc))
    finally:
        sock.close()


async def run_worker(
    settings: Settings, *, worker_id: str | None, slots: int | None, tags: tuple[str, ...],
    credential: str | None = None, group: str = "", task_user: str | None = None,
) -> None:
    from agents.worker.agent import WorkerAgent

    # the credential it was given (--token-file): for the server as for the api
    credential = credential if credential is not None else settings_credential(settings)
    check_worker_credential(credential, worker_id)
    try:
        nc = await _connected(settings, "dtf-worker", streams=False, worker_id=worker_id,
                              cred=credential)
    except Unavailable as exc:
        if credential or "requires a credential" not in str(exc):
            raise
        raise Unavailable(  # the admin's (the general hint) would be refused: say which
            f"NATS at {settings.server} requires a credential, and a worker's is a worker "
            "key: on the `dtf up` host, `dtf worker-key create ID > worker.key`; copy it "
            "here and pass --token-file worker.key with --id ID") from None
    try:
        agent = WorkerAgent(nc, worker_id=worker_id, slots=slots, tags=tags, group=group,
                            heartbeat_interval=settings.heartbeat_interval,
                            cache_dir=Path(settings.cache_dir),
                            browsers=settings.detect_browser,
                            browser_contexts=settings.browser_contexts,
                            browser_recycle=settings.browser_recycle,
                            always_unpack=settings.always_unpack,
                            credential=credential, task_user=task_user,
                            signing_key_dir=Path(settings.data_dir) / "worker-keys")
        await run_until_signal(agent.run, nc)
    finally:
        await asyncio.shield(_close(nc))


def check_worker_credential(credential: str | None, worker_id: str | None) -> None:
    """A worker connects with a worker credential only: never an admin's or a manager's
    (whose rights would then be the worker's, and its tasks')."""
    if credential is None or credential.startswith(API_KEY_PREFIX + "_"):
        return  # no auth (--insecure-dev), or a worker API key, scoped by the api
    claims = unverified_claims(credential)
    if claims is None:
        raise InvalidInput("the worker's credential is neither a worker key (dtfk_...) nor a "
                           "token")
    role, wid = claims.get("role"), claims.get("wid")
    if role != "worker":
        raise InvalidInput(
            f"dtf worker needs a worker credential, and this token's role is {role!r}; create a "
            "worker key with `dtf worker-key create ID` on the `dtf up` host and pass it "
            "with --token-file")
    if worker_id is not None and wid not in (None, worker_id):
        raise InvalidInput(f"this worker token is for worker {wid!r}, not {worker_id!r}")


def _policy(settings: Settings) -> Any:
    from agents.control.policy_plugins import load_policy

    return load_policy(settings.policy)
