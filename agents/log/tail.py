"""Tails of a JetStream stream: what agents fold and clients follow (ADR 0006, 0012).

A tail asks for the records on its filters from a sequence on; a short tail of a large
stream asks the server for one covering filter and drops the rest itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from agents.log.consumer import Opener, OrderedConsumer
from agents.log.port import Record, covering_filter

if TYPE_CHECKING:
    from agents.log.jetstream import JetStreamLog

log = logging.getLogger(__name__)
# A consumer with several filters costs the server time in proportion to the subjects they
# match in the whole stream (about 0.3 s per million events, at any start), where one filter
# costs nothing. So a tail that starts near the end of a large stream (a cold start after a
# snapshot, a client following its run) asks for one covering filter and drops the rest here.
COSTLY_STREAM = 100_000  # events: below this, several filters cost little
SHORT_TAIL = 100  # a tail at most 1/SHORT_TAIL of the stream is short
STREAM_INFO_WAIT_S = 2.0  # a credential without stream info gets no answer, only a timeout


class Tail(OrderedConsumer):
    """Batches of records from ``start_seq`` on, then as they are appended."""

    def __init__(self, log: JetStreamLog, filters: list[str], start_seq: int,
                 opener: Opener | None) -> None:
        super().__init__(log, start_seq, opener)
        self._filters = filters
        self._filters_sent = filters

    async def _server_filters(self) -> list[str]:
        cover = covering_filter(self._filters) if len(self._filters) > 1 else None
        if cover is None:
            return self._filters
        try:
            async with asyncio.timeout(STREAM_INFO_WAIT_S):
                state = (await self._log.js.stream_info(self._log.stream)).state
        except Exception as exc:  # not allowed, or not answered: the filters as they are
            log.debug("no stream info for %s (%r); using %d filters", self._log.stream, exc,
                      len(self._filters))
            return self._filters
        tail = state.last_seq - self._start + 1
        if state.messages < COSTLY_STREAM or tail * SHORT_TAIL > state.messages:
            return self._filters
        self._wanted = self._filters
        return [cover]

    async def start(self) -> None:
        if self._sub is not None:
            return
        filters = await self._server_filters()
        await self._open(filters, self._start)
        self._filters_sent = filters
        self._watch = asyncio.create_task(self._watchdog())
        self._watch_reconnects()

    def _watch_reconnects(self) -> None:
        """Reopen after the connection comes back: the consumer lived on the server that
        was lost (mem storage, one replica), so its heartbeats would only tell later."""
        callbacks = getattr(self._log.nc, "on_reconnect", None)
        if callbacks is not None:
            callbacks.append(self._reconnected)

    def _reconnected(self) -> None:
        if not self._closed and self._sub is not None:
            self._reopen()

    async def close(self) -> None:
        callbacks = getattr(self._log.nc, "on_reconnect", None)
        if callbacks is not None and self._reconnected in callbacks:
            callbacks.remove(self._reconnected)
        await super().close()

    async def empty(self) -> bool:
        """True when nothing matched at the start and nothing has arrived."""
        await self.start()
        await self._drain()
        return not self._buf and self._opened_pending == 0 and self._next_cseq == 1

    async def __aenter__(self) -> Tail:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def __aiter__(self) -> AsyncIterator[list[Record]]:
        """Batches of records; an empty one when only dropped records brought the tail to
        its end (``pending`` is 0 then)."""
        await self.start()
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self._drain()
            batch, self._buf = self._buf, []
            if batch or self.pending == 0:
                yield batch
