"""A tail whose consumer the api opens: how clients (readers, managers, the CLI) follow
the event and output streams.

A client may not create JetStream consumers: it would choose the deliver subject, and the
server would publish stream messages there on its behalf (ADR 0008). So the client
subscribes to a fresh subject in its own inbox and asks the api (``dtf.q.tail``) to open
an ephemeral push consumer delivering there; the api checks that the subject is the
requester's own. The client keeps the guarantees of an ordered consumer itself: it answers
flow control, and when a delivery is missed (a gap in the consumer sequence, or no
heartbeat for a while) it asks for a new consumer from the next stream sequence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agents.log.jetstream import JetStreamTail, ack_source
from dtf_core import commands as cmds
from dtf_core.replies import TailOpened

if TYPE_CHECKING:
    from agents.log.jetstream import JetStreamLog

log = logging.getLogger(__name__)
Opener = Callable[[cmds.OpenTail], Awaitable[TailOpened]]
HEARTBEAT_S = 2.0  # the api opens consumers with this idle heartbeat
MISSED_HEARTBEATS = 3  # silent this long: the consumer is gone, open another
REOPEN_PAUSE_S = 0.5


def _consumer_seq(reply: str) -> tuple[int, int]:
    """(stream seq, consumer seq) from a JetStream ack subject, v1 or v2 format."""
    t = reply.split(".")
    if len(t) == 9:
        return int(t[5]), int(t[6])
    return int(t[7]), int(t[8])


class ServedTail(JetStreamTail):
    def __init__(self, log: JetStreamLog, filters: list[str], start_seq: int,
                 opener: Opener) -> None:
        super().__init__(log, filters, start_seq)
        self._opener = opener
        self._filters_sent = filters
        self._gen = 0  # each consumer opened; deliveries of an earlier one are dropped
        self._next_cseq = 1
        self._last_sseq = self._start - 1
        self._opened_pending = -1
        self._heard = 0.0
        self._watch: asyncio.Task[None] | None = None
        self._reopening = False
        self._closed = False

    async def start(self) -> None:
        if self._sub is not None:
            return
        filters = await self._server_filters()
        await self._open(filters, self._start)
        self._filters_sent = filters
        self._watch = asyncio.create_task(self._watchdog())

    async def _open(self, filters: list[str], start: int) -> None:
        """Subscribe to a fresh subject of this client's inbox, then have the api open a
        consumer delivering there (deliveries may come before the api's answer)."""
        nc = self._log.nc
        self._gen += 1
        gen = self._gen
        self._next_cseq = 1

        async def deliver_cb(msg: Msg) -> None:
            if gen == self._gen:
                await self._on_raw(msg)

        deliver = nc.new_inbox()
        sub = await nc.subscribe(deliver, cb=deliver_cb, pending_msgs_limit=-1,
                                 pending_bytes_limit=-1)
        try:
            res = await self._opener(cmds.OpenTail(stream=self._log.stream, filters=filters,
                                                   start_seq=start, deliver=deliver))
        except BaseException:
            await _unsubscribe(sub)
            raise
        old, self._sub = self._sub, sub
        if self._closed:
            old = sub
        self._opened_pending = res.pending
        self._heard = asyncio.get_running_loop().time()
        if old is not None:
            await _unsubscribe(old)

    async def _on_raw(self, msg: Msg) -> None:
        headers = msg.headers or {}
        if headers.get("Status") == "100":  # flow control or idle heartbeat
            self._heard = asyncio.get_running_loop().time()
            if msg.reply:  # flow control: delivered to this client, ask for more
                await self._log.nc.publish(msg.reply, b"")
            stalled = headers.get("Nats-Consumer-Stalled")
            if stalled:
                await self._log.nc.publish(stalled, b"")
            last = headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != self._next_cseq - 1:
                self._reopen()
            return
        if ack_source(msg.reply) is None:
            return  # not a JetStream delivery
        self._heard = asyncio.get_running_loop().time()
        sseq, cseq = _consumer_seq(msg.reply or "")
        if cseq != self._next_cseq:  # a delivery was missed: start again after the last one
            self._reopen()
            return
        self._next_cseq = cseq + 1
        self._last_sseq = sseq
        await self._on_msg(msg)

    def _reopen(self) -> None:
        if self._reopening:
            return
        self._reopening = True
        self._gen += 1  # drop what the abandoned consumer still delivers
        asyncio.get_running_loop().create_task(self._reopen_now())

    async def _reopen_now(self) -> None:
        try:
            while self._sub is not None:
                try:
                    log.info("reopening a tail of %s at seq %d", self._log.stream,
                             self._last_sseq + 1)
                    await self._open(self._filters_sent, self._last_sseq + 1)
                    return
                except Exception as exc:
                    log.warning("could not reopen a tail of %s (%s); trying again",
                                self._log.stream, exc)
                    await asyncio.sleep(REOPEN_PAUSE_S)
        finally:
            self._reopening = False

    async def _watchdog(self) -> None:
        clock = asyncio.get_running_loop().time
        while self._sub is not None:
            await asyncio.sleep(HEARTBEAT_S)
            if not self._reopening and clock() - self._heard > HEARTBEAT_S * MISSED_HEARTBEATS:
                self._reopen()

    async def empty(self) -> bool:
        await self.start()
        return not self._buf and self._opened_pending == 0 and self._next_cseq == 1

    async def _release(self, sub: Any) -> None:
        """Nothing to delete from here (clients may not): the api's consumer goes soon
        after this client stops listening."""

    async def close(self) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        await super().close()


async def _unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except nats.errors.Error as exc:  # the connection is gone: so is the subscription
        log.debug("unsubscribing from %s: %r", sub.subject, exc)
