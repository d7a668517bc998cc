"""Connecting to NATS and creating DTF's streams idempotently."""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from dtf_core import subjects
from dtf_core.errors import Unavailable

log = logging.getLogger(__name__)

MIN_SERVER = (2, 12, 3)
MAX_PAYLOAD = 1024 * 1024


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


async def connect(url: str, name: str, *, reconnect: bool = True, **options: Any) -> Client:
    """Connect, failing fast with one clear error when no server is there; once connected,
    reconnect forever (agents) or not at all (one-shot CLI commands)."""

    async def _quiet(exc: Exception) -> None:
        log.debug("nats error: %s", exc)

    try:
        nc = await nats.connect(
            url,
            name=name,
            connect_timeout=options.pop("connect_timeout", 2),
            max_reconnect_attempts=1,  # nats-py hangs on a refused first connect otherwise
            reconnect_time_wait=0.05,
            error_cb=_quiet,
            **options,
        )
    except Exception as exc:  # nats raises several unrelated types for "not there"
        raise Unavailable(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    nc.options["max_reconnect_attempts"] = -1 if reconnect else 0
    nc.options["allow_reconnect"] = reconnect
    nc.options["reconnect_time_wait"] = 0.5
    v = nc.connected_server_version
    check_server_version(f"{v.major}.{v.minor}.{v.patch}")
    return nc


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the streams, or update them to the current config; safe to run concurrently."""
    for cfg in stream_configs(replicas):
        try:
            await js.add_stream(cfg)
        except BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different config
                raise
            await js.update_stream(cfg)
