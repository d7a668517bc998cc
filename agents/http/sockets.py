"""The WebSocket endpoints: ``/ws`` (a filtered event feed) and ``/ws/dashboard`` (the
aggregate, at most a few times a second). A client is admitted as the REST API admits a
request (its credential, which must allow reading); a cookie also needs the page's own
origin. The close codes: 4401 no or bad credential, 4403 the role may not read, 4429 too
many bad credentials, 1013 too slow (reconnect and reload)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from agents.auth.errors import Forbidden, Unauthenticated
from agents.http import access
from agents.http.errors import TooManyFailures
from agents.http.live import Feed, matcher
from agents.http.pool import ClientPool
from agents.wire.client import ApiClient
from dtf_core.errors import DTFError

log = logging.getLogger(__name__)

RECHECK_S = 10.0  # an idle client's credential is looked at again this often


class Sockets:
    def __init__(self, pool: ClientPool, feed: Feed, *, secure: bool) -> None:
        self.pool, self.feed, self.secure = pool, feed, secure

    async def admit(self, ws: WebSocket) -> ApiClient | None:
        await ws.accept()
        try:
            cred = access.credential(ws, secure=self.secure)
            api = await self.pool.client(cred, access.source(ws))
            await api.status()  # may it read at all (a worker's token may not)
        except DTFError as exc:
            code = {Unauthenticated: 4401, Forbidden: 4403, TooManyFailures: 4429}.get(
                type(exc), 1011)
            await ws.close(code=code, reason=str(exc)[:120])
            return None
        return api

    async def events(self, ws: WebSocket) -> None:
        api = await self.admit(ws)
        if api is None:
            return
        sub = self.feed.subscribe(matcher(ws.query_params))
        try:
            await ws.send_text(msgspec.json.encode(
                {"type": "hello", "seq": self.feed.last_seq}).decode())

            async def send() -> None:
                while True:
                    try:
                        batch = await asyncio.wait_for(sub.queue.get(), RECHECK_S)
                    except TimeoutError:
                        batch = ""
                    if sub.behind.is_set():
                        await ws.close(code=1013, reason="too slow: reconnect and reload")
                        return
                    if api.nc.is_closed:
                        await ws.close(code=4401, reason="the credential is no longer valid")
                        return
                    if batch:
                        await ws.send_text(batch)

            await until_either(ws, send())
        finally:
            self.feed.unsubscribe(sub)

    async def dashboard(self, ws: WebSocket) -> None:
        api = await self.admit(ws)
        if api is None:
            return

        async def send(seen: int) -> None:
            while True:
                try:
                    seen, snapshot = await asyncio.wait_for(self.feed.next_snapshot(seen),
                                                            RECHECK_S)
                except TimeoutError:
                    snapshot = b""
                if api.nc.is_closed:
                    await ws.close(code=4401, reason="the credential is no longer valid")
                    return
                if snapshot:
                    await ws.send_text(snapshot.decode())

        with self.feed.watching() as seen:
            await until_either(ws, send(seen))


async def until_either(ws: WebSocket, sender: Coroutine[Any, Any, None]) -> None:
    """Run ``sender`` until it ends or the client goes away, whichever comes first."""
    async def receive() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

    tasks = [asyncio.ensure_future(sender), asyncio.ensure_future(receive())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, (WebSocketDisconnect, RuntimeError, OSError)):
                log.debug("websocket ended: %r", exc)  # the client went away mid-send
            elif exc is not None:
                raise exc
    finally:
        for task in tasks:
            task.cancel()
