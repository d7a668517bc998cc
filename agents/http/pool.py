"""One NATS connection per credential, so that the server's permissions and the api's gate
judge every HTTP request as they judge the CLI's: the HTTP agent adds no power of its own.

A refused credential is remembered for a while (a flood of bad tokens does not become a
flood of logins at the server), and a source that keeps failing waits (429)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time

from nats.aio.client import Client

from agents.auth.errors import Unauthenticated
from agents.auth.server_auth import FailedLogins
from agents.http.errors import TooManyFailures
from agents.nats.connect import CredentialRefused, connect
from agents.wire.client import ApiClient

log = logging.getLogger(__name__)

POOL_SIZE = 256
REFUSED_TTL_S = 30.0


def _key(credential: str | None) -> bytes:
    return hashlib.sha256((credential or "").encode()).digest()


class ClientPool:
    """``credential=None`` (a stack without auth) shares one connection."""

    def __init__(self, url: str, tls_ca: str | None, *, size: int = POOL_SIZE,
                 timeout: float = 10.0) -> None:
        self.url, self.tls_ca, self.size, self.timeout = url, tls_ca, size, timeout
        self.clients: collections.OrderedDict[bytes, ApiClient] = collections.OrderedDict()
        self.opening: dict[bytes, asyncio.Future[ApiClient]] = {}
        self.refused: dict[bytes, float] = {}
        self.failures = FailedLogins()

    async def client(self, credential: str | None, source: str = "") -> ApiClient:
        key = _key(credential)
        client = self.clients.get(key)
        if client is not None and not client.nc.is_closed:
            self.clients.move_to_end(key)
            return client
        self.clients.pop(key, None)
        if self.failures.blocked(source) > 0:
            raise TooManyFailures("too many failed logins from this address: wait a few seconds")
        refused_at = self.refused.get(key)
        if refused_at is not None and time.monotonic() - refused_at < REFUSED_TTL_S:
            self.failures.failed(source)
            raise Unauthenticated("credential refused: it is unknown, expired or revoked")
        opening = self.opening.get(key)
        if opening is None:  # one login per credential, however many requests wait on it
            opening = asyncio.ensure_future(self._open(credential))
            self.opening[key] = opening
            opening.add_done_callback(lambda _: self.opening.pop(key, None))
        try:
            client = await asyncio.shield(opening)
        except CredentialRefused:
            self.refused[key] = time.monotonic()
            self._trim_refused()
            self.failures.failed(source)
            raise Unauthenticated("credential refused: it is unknown, expired or revoked"
                                  ) from None
        self.clients[key] = client
        await self._evict()
        return client

    async def _open(self, credential: str | None) -> ApiClient:
        # No reconnects: a connection the server drops (a revoked token's is kicked) is
        # closed, its requests fail at once, and the next request logs in again.
        nc: Client = await connect(self.url, "dtf-http", credential=credential,
                                   tls_ca=self.tls_ca, reconnect=False)
        return ApiClient(nc, timeout=self.timeout, credential=credential)

    def _trim_refused(self) -> None:
        now = time.monotonic()
        for key in [k for k, at in self.refused.items() if now - at >= REFUSED_TTL_S]:
            del self.refused[key]
        while len(self.refused) > 10_000:
            self.refused.pop(next(iter(self.refused)))

    async def _evict(self) -> None:
        while len(self.clients) > self.size:
            _, oldest = self.clients.popitem(last=False)
            await _close(oldest.nc)

    async def close(self) -> None:
        for fut in list(self.opening.values()):
            fut.cancel()
        clients, self.clients = list(self.clients.values()), collections.OrderedDict()
        for client in clients:
            await _close(client.nc)


async def _close(nc: Client) -> None:
    try:
        await asyncio.wait_for(nc.close(), 5.0)
    except (TimeoutError, OSError) as exc:
        log.info("closing a pooled connection: %r", exc)
