"""Connecting to NATS and creating DTF's streams idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from agents.nats.fast_client import FastClient
from dtf_core import subjects
from dtf_core.errors import Unavailable

log = logging.getLogger(__name__)

MIN_SERVER = (2, 12, 3)
MAX_PAYLOAD = 1024 * 1024
CONNECT_DEADLINE_S = 10.0


class CredentialRefused(Unavailable):
    """The server (its auth callout) refused the credential presented."""


# nats-server 2.15 caps a stream at 1,000 consumers unless it says otherwise; every tail
# (`dtf wait`, `dtf logs -f`, a run's client, a task's history) is a short-lived one.
MAX_CONSUMERS = 10_000


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.ALL_EVENTS],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            duplicate_window=120.0,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
            allow_atomic=True,
            max_msg_size=MAX_PAYLOAD,
            max_consumers=MAX_CONSUMERS,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.HEARTBEATS_STREAM,
            subjects=[subjects.HEARTBEATS],
            storage=StorageType.FILE,
            max_msgs_per_subject=5,
            max_age=3600.0,
            allow_direct=True,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.LOGS_STREAM,
            subjects=[subjects.LOGS],
            storage=StorageType.FILE,
            max_age=7 * 24 * 3600.0,
            max_bytes=2 * 1024**3,
            discard=DiscardPolicy.OLD,
            allow_atomic=True,
            max_consumers=MAX_CONSUMERS,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.DLQ_STREAM,
            subjects=[subjects.DLQ],
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600.0,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
    ]


def parse_version(text: str) -> tuple[int, int, int]:
    core = text.strip().lstrip("v").split("-")[0]
    parts = [int(p) for p in core.split(".")[:3]]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def check_server_version(version: str) -> None:
    if parse_version(version) < MIN_SERVER:
        need = ".".join(map(str, MIN_SERVER))
        raise Unavailable(f"nats-server {version} is too old: DTF needs {need} or newer")


async def connect(
    url: str, name: str, *, reconnect: bool = True, credential: str | None = None,
    worker_id: str | None = None, tls_ca: str | None = None, **options: Any,
) -> Client:
    """Connect, failing fast with one clear error when no server is there; once connected,
    reconnect forever (agents) or not at all (one-shot CLI commands).

    ``credential`` (a token or worker API key) is presented to the server's auth callout,
    with the inbox prefix the callout grants to that principal."""
    if url.startswith("tls://"):
        if tls_ca is None:
            raise Unavailable(f"{url} needs a CA to verify it: set DTF_TLS_CA")
        from agents.nats.tls import client_context

        options["tls"] = client_context(tls_ca)
    if credential:
        from agents.auth.server_auth import client_inbox_prefix

        options["token"] = credential
        prefix = client_inbox_prefix(credential, worker_id)
        if prefix:
            options["inbox_prefix"] = prefix

    nc = FastClient()
    nc.server_errors = []
    nc.gone = asyncio.Event()
    nc.on_reconnect = []

    async def _closed() -> None:
        nc.gone.set()

    async def _reconnected() -> None:
        for callback in list(nc.on_reconnect):
            callback()

    async def _quiet(exc: Exception) -> None:
        log.debug("nats error: %s", exc)
        nc.server_errors[:] = [*nc.server_errors[-20:], str(exc)]

    servers = [u.strip() for u in url.split(",") if u.strip()]  # a cluster: any node will do
    try:
        await asyncio.wait_for(nc.connect(
            servers,
            name=name,
            connect_timeout=options.pop("connect_timeout", 2),
            max_reconnect_attempts=1,  # nats-py hangs on a refused first connect otherwise
            reconnect_time_wait=0.05,  # type: ignore[arg-type]  # nats-py takes a float
            error_cb=_quiet,
            closed_cb=_closed,
            reconnected_cb=_reconnected,
            **options,
        ), CONNECT_DEADLINE_S)
    except TimeoutError:
        hint = (" (TLS: is DTF_TLS_CA the CA that signed the server's certificate, and does "
                "the certificate name the host in the URL? `dtf up --tls` names localhost, "
                "its host name, 127.0.0.1 and --host)" if "tls://" in url
                else " (if it requires TLS, use a tls:// URL)")
        raise Unavailable(f"NATS at {url} did not complete the connection{hint}") from None
    except Exception as exc:  # nats raises several unrelated types for "not there"
        text = str(exc) or type(exc).__name__
        if any("uthorization" in e for e in [text, *nc.server_errors]):
            if not credential:
                raise Unavailable(
                    f"NATS at {url} requires a credential: pass --token-file FILE, or "
                    "`export DTF_TOKEN_FILE=FILE` (`dtf up` prints its admin credential's "
                    "absolute path; on its host, as its user, clients find it by themselves)"
                    ) from None
            raise CredentialRefused(f"NATS at {url} refused the credential: {text}") from None
        raise Unavailable(f"cannot reach NATS at {url}: {text}") from None
    nc.options["max_reconnect_attempts"] = -1 if reconnect else 0
    nc.options["allow_reconnect"] = reconnect
    nc.options["reconnect_time_wait"] = 0.5
    v = nc.connected_server_version
    check_server_version(f"{v.major}.{v.minor}.{v.patch}")
    return nc


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the streams, or update them to the current config; safe to run concurrently.
    Never lowers a stream's replicas: an agent that asks for the default (1) on a cluster
    that `dtf up --cluster 3` or an operator made R3 leaves it R3."""
    for cfg in stream_configs(replicas):
        try:
            await js.add_stream(cfg)
        except BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different config
                raise
            existing = (await js.stream_info(str(cfg.name))).config.num_replicas or 1
            cfg.num_replicas = max(replicas, existing)
            await js.update_stream(cfg)
    buckets = {subjects.PACKS_BUCKET: ("code packs", 7 * 24 * 3600.0),
               subjects.ARTIFACTS_BUCKET: ("run artifacts", 30 * 24 * 3600.0),
               subjects.SNAPSHOTS_BUCKET: ("board snapshots", 0.0)}
    for bucket, (what, ttl) in buckets.items():
        with contextlib.suppress(BadRequestError):  # there already, with another config
            await js.create_object_store(bucket, ObjectStoreConfig(
                bucket=bucket, ttl=ttl or None, replicas=replicas, storage=StorageType.FILE,
                description=f"DTF {what}"))
        info = await js.stream_info(f"OBJ_{bucket}")
        if (info.config.num_replicas or 1) < replicas:
            info.config.num_replicas = replicas
            await js.update_stream(info.config)
