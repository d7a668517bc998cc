"""The callout service with a toy ``authorize`` in the test's event loop, plus clients that
record the errors the server sends them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.natsauth import nkeys, permissions
from agents.auth.natsauth.callout import AuthCallout
from agents.auth.natsauth.permissions import Permissions
from agents.nats.connect import ensure_streams

WAIT_S = 3.0

# token -> (role, principal); real tokens are verified JWTs (agents.auth).
TOKENS = {
    "worker-w1": ("worker", "w1"),
    "worker-w2": ("worker", "w2"),
    "reader": ("reader", "r1"),
    "manager": ("manager", "m1"),
    "admin": ("admin", "a1"),
    "agent": ("admin", "agent-control"),  # what `dtf up` mints for its own agents
}


@dataclass(frozen=True)
class AuthedServer:
    url: str
    issuer: nkeys.KeyPair
    auth_user: str
    auth_password: str
    log: Path


@dataclass
class ToyAuth:
    revoked: set[str] = field(default_factory=set)
    expires: dict[str, int] = field(default_factory=dict)  # token -> unix seconds
    asked: list[str] = field(default_factory=list)

    def __call__(self, token: str, client_info: Mapping[str, Any]) -> Permissions | str:
        self.asked.append(token)
        if token in self.revoked:
            return "token revoked"
        if token not in TOKENS:
            return "unknown token"
        return permissions.for_role(*TOKENS[token]).until(self.expires.get(token))


@dataclass
class Recorder:
    """What the server told one client: errors (-ERR), disconnects, close."""

    errors: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        self.changed.set()

    async def on_disconnect(self) -> None:
        self.disconnected.set()

    async def on_close(self) -> None:
        self.closed.set()

    async def wait_error(self, fragment: str, timeout: float = WAIT_S) -> str:
        """The first error containing ``fragment`` (case-insensitive), waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for err in self.errors:
                    if fragment.lower() in err.lower():
                        return err
                self.changed.clear()
                await self.changed.wait()


async def barrier(nc: Client) -> None:
    """Return once the server has processed everything ``nc`` sent before: a message to
    ourselves makes the round trip behind our earlier SUBs and PUBs. (nats-py 2.16's
    ``flush()`` is no such barrier: it writes its PING ahead of the commands it buffered.)"""
    inbox = nc.new_inbox()
    echoed = asyncio.Event()

    async def on_echo(_: Msg) -> None:
        echoed.set()

    sub = await nc.subscribe(inbox, cb=on_echo)
    await nc.publish(inbox, b"")
    try:
        await asyncio.wait_for(echoed.wait(), WAIT_S)
    finally:
        await sub.unsubscribe()


@dataclass
class Harness:
    authed: AuthedServer
    auth: ToyAuth
    callout: AuthCallout
    service: Client  # the callout's own connection, in the system account
    admin: Client
    conns: list[Client] = field(default_factory=list)

    async def connect(self, token: str | None, rec: Recorder | None = None,
                      **options: Any) -> tuple[Client, Recorder]:
        rec = rec or Recorder()
        if token in TOKENS:
            options.setdefault("inbox_prefix", permissions.for_role(*TOKENS[token]).inbox_prefix)
        nc = await nats.connect(
            self.authed.url, token=token, error_cb=rec.on_error,
            disconnected_cb=rec.on_disconnect, closed_cb=rec.on_close,
            connect_timeout=WAIT_S, **options,
        )
        self.conns.append(nc)
        return nc, rec

    async def delivered(self, client: Client, subject: str, marker: str) -> bool:
        """Publish on ``subject`` then on the allowed ``marker`` subject from ``client``;
        return whether an admin subscriber got the first. The server handles one client's
        messages in order, so once the marker has arrived the first has arrived or never
        will."""
        got: list[str] = []
        marker_seen = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            got.append(msg.subject)
            if msg.subject == marker:
                marker_seen.set()

        subs = [await self.admin.subscribe(s, cb=on_msg) for s in {subject, marker}]
        try:
            await barrier(self.admin)
            await client.publish(subject, b"probe")
            await client.publish(marker, b"marker")
            await asyncio.wait_for(marker_seen.wait(), WAIT_S)
        finally:
            for sub in subs:
                await sub.unsubscribe()
        return subject in got


@contextlib.asynccontextmanager
async def harness(authed: AuthedServer) -> AsyncIterator[Harness]:
    auth = ToyAuth()
    callout = AuthCallout(authed.issuer, auth)
    service = await nats.connect(authed.url, user=authed.auth_user,
                                 password=authed.auth_password, name="dtf-auth")
    await callout.start(service)
    admin = await nats.connect(authed.url, token="admin", name="test-admin")
    await ensure_streams(admin.jetstream())
    h = Harness(authed, auth, callout, service, admin)
    try:
        yield h
    finally:
        for nc in [*h.conns, admin]:
            with contextlib.suppress(Exception):
                await nc.close()
        await callout.stop()
        await service.close()
