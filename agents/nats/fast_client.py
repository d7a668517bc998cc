"""DTF's NATS client: nats-py's, with a faster parser, raw and inline subscriptions
(agents/nats/parser.py), headers parsed on first use, the server's errors kept, and a
flush() that waits for what was sent before it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nats.aio.client import PING_PROTO, Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionDrainingError
from nats.errors import TimeoutError as NatsTimeout

from agents.nats.parser import FastParser

_HDR_PREFIX = len(b"NATS/1.0")


class LazyHeaders(Mapping[str, str]):
    """Message headers parsed on first use. Agents read the headers of few messages (logs,
    dead letters), but nats-py parses every message's headers eagerly, and JetStream keeps
    the publish headers (message id, expected sequences, batch ids) on every event."""

    __slots__ = ("_client", "_parsed", "_raw")

    def __init__(self, raw: bytes, client: Client) -> None:
        self._raw = raw
        self._client = client
        self._parsed: dict[str, str] | None = None

    def _headers(self) -> dict[str, str]:
        if self._parsed is None:
            body = self._raw[_HDR_PREFIX + 2 :]
            self._parsed = self._client._parse_header_lines(body) if body else {}
        return self._parsed

    def __getitem__(self, key: str) -> str:
        return self._headers()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    def __bool__(self) -> bool:
        return len(self._raw) > _HDR_PREFIX + 4


class FastClient(Client):
    """nats-py's client with a faster parser and raw subscriptions (agents/nats/parser.py),
    lazily parsed headers (status messages still parse eagerly), remembering the errors
    the server sent (a refused credential, a denied publish)."""

    server_errors: list[str]
    gone: asyncio.Event  # set when the connection is closed for good
    # called after each reconnect: a consumer on the lost server may be gone with it
    on_reconnect: list[Callable[[], None]]

    def __init__(self) -> None:
        super().__init__()
        self._ps: FastParser = FastParser(self)

    def inline(self, sub: Subscription) -> Subscription:
        """Run ``sub``'s callback on the reading task as each message is read, not on a task
        of its own after a switch. Only for a callback that never waits on anything (it
        would hold up every message of the connection): a queue's put, a future's result,
        a publish. Call it right after subscribing, before anything can arrive."""
        task = sub._wait_for_msgs_task
        if task is not None:
            task.cancel()
        self._ps.inline[sub._id] = sub
        return sub

    async def _init_request_sub(self) -> None:
        """The shared inbox of requests, its answers handed over inline."""
        await super()._init_request_sub()
        assert self._resp_sub_prefix
        mux = (self._resp_sub_prefix + b"*").decode()
        self.inline(next(s for s in self._subs.values() if s.subject == mux))

    async def _request_new_style(self, subject: str, payload: bytes, timeout: float = 1,
                                 headers: dict[str, Any] | None = None) -> Msg:
        """nats-py's, with the answer's wait one wake-up shorter (``asyncio.timeout``, not
        ``wait_for``'s extra future and callback)."""
        if self.is_draining_pubs:
            raise ConnectionDrainingError
        if not self._resp_sub_prefix:
            await self._init_request_sub()
        assert self._resp_sub_prefix
        token = self._nuid.next()
        token.extend(secrets.token_hex(2).encode())
        key = token.decode()
        inbox = self._resp_sub_prefix[:]
        inbox.extend(token)
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._resp_map[key] = future
        try:
            await self.publish(subject, payload, reply=inbox.decode(), headers=headers)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise NatsTimeout from None
        finally:
            self._resp_map.pop(key, None)

    async def _send_ping(self, future: asyncio.Future[bool] | None = None) -> None:
        """A PING in its place in the queue. nats-py (2.16) writes it straight to the
        socket, ahead of the commands still waiting for its flusher task, so flush()'s PONG
        could come back before the server had seen a SUB or PUB made just before: another
        client's request then found no responder. Here flush() means what it says."""
        self._pongs.append(future or asyncio.get_running_loop().create_future())
        await self._send_command(PING_PROTO)
        await self._flush_pending()

    def denied(self, subject: str) -> bool:
        """Did the server refuse a publish to ``subject`` on this connection?"""
        needle = f'publish to "{subject.lower()}"'
        return any(needle in e.lower() for e in getattr(self, "server_errors", ()))

    async def _process_headers(self, headers: bytes) -> Any:
        if headers and len(headers) > _HDR_PREFIX and headers[_HDR_PREFIX] != 32:
            return LazyHeaders(bytes(headers), self)
        return await super()._process_headers(headers)


def inline(nc: Client, sub: Subscription) -> Subscription:
    """``FastClient.inline`` where ``nc`` is one; a plain client keeps its task."""
    return nc.inline(sub) if isinstance(nc, FastClient) else sub
