"""The JetStream adapter of the event-log port.

Appends of more than one message use JetStream's atomic batch publish: every message
carries ``Nats-Batch-Id``/``Nats-Batch-Sequence`` and only the last (``Nats-Batch-Commit``)
gets a PubAck, so a batch costs one fsync and one round trip.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agents.log.port import (
    MAX_BATCH,
    Append,
    AppendConflict,
    Appended,
    DuplicateBatch,
    Record,
    covering_filter,
)
from dtf_core import commands as cmds
from dtf_core.errors import DTFError, InvalidInput, Unavailable
from dtf_core.replies import TailOpened
from dtf_core.subjects import EVENTS_STREAM, subject_matches

log = logging.getLogger(__name__)
ERR_WRONG_LAST_SEQ = 10071
ERR_BATCH_DUPLICATE = 10201
ERR_MSG_TOO_BIG = 10054


def parse_ack_reply(reply: str) -> tuple[int, int, int]:
    """(stream seq, timestamp ns, pending) from a JetStream ack subject, v1 or v2 format."""
    t = reply.split(".")
    if len(t) == 9:
        return int(t[5]), int(t[7]), int(t[8])
    return int(t[7]), int(t[9]), int(t[10])


def ack_source(reply: str | None) -> tuple[str, str] | None:
    """(stream, consumer) that delivered a message, from its JetStream ack subject (v1 or
    v2 format); None for a message that no consumer delivered."""
    t = (reply or "").split(".")
    if t[:2] != ["$JS", "ACK"]:
        return None
    if len(t) == 9:
        return t[2], t[3]
    if len(t) >= 11:
        return t[4], t[5]
    return None


def _headers(item: Append) -> dict[str, str]:
    h = {"Nats-Msg-Id": item.msg_id}
    if item.expect_seq is not None:
        h["Nats-Expected-Last-Subject-Sequence"] = str(item.expect_seq)
        h["Nats-Expected-Last-Subject-Sequence-Subject"] = item.expect_filter or item.subject
    return h


def _raise_for(ack: dict[str, Any]) -> None:
    err = ack.get("error")
    if not err:
        return
    code = err.get("err_code")
    desc = err.get("description", "")
    if code == ERR_WRONG_LAST_SEQ:
        raise AppendConflict(desc)
    if code == ERR_BATCH_DUPLICATE:
        raise DuplicateBatch(desc)
    if code == ERR_MSG_TOO_BIG:
        raise InvalidInput(f"event too large: {desc}")
    raise DTFError(f"append refused by JetStream ({code}): {desc}")


class JetStreamLog:
    def __init__(self, nc: Client, stream: str = EVENTS_STREAM, timeout: float = 5.0,
                 opener: Callable[[cmds.OpenTail], Awaitable[TailOpened]] | None = None,
                 ) -> None:
        """``opener``: the api's ``open_tail`` (a client, which may not create consumers:
        its tails are served by the api); None for the agents."""
        self.nc = nc
        self.opener = opener
        self.js: JetStreamContext = nc.jetstream()
        self.stream = stream
        self.timeout = timeout

    async def _request(self, subject: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            msg = await self.nc.request(subject, data, headers=headers, timeout=self.timeout)
        except (NatsTimeout, NoRespondersError) as exc:
            raise Unavailable(f"JetStream did not acknowledge {subject}: {exc!r}") from None
        ack: dict[str, Any] = json.loads(msg.data)
        _raise_for(ack)
        return ack

    async def append(self, batch: Sequence[Append]) -> Appended:
        if not batch:
            return Appended()
        if len(batch) > MAX_BATCH:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH} messages")
        if len(batch) == 1:
            ack = await self._request(batch[0].subject, batch[0].data, _headers(batch[0]))
            seq = int(ack["seq"])
            return Appended.of([seq], [seq] if ack.get("duplicate") else [])
        batch_id = uuid.uuid4().hex
        last = len(batch)
        for i, item in enumerate(batch[:-1], start=1):
            h = _headers(item)
            h["Nats-Batch-Id"] = batch_id
            h["Nats-Batch-Sequence"] = str(i)
            await self.nc.publish(item.subject, item.data, headers=h)
        h = _headers(batch[-1])
        h["Nats-Batch-Id"] = batch_id
        h["Nats-Batch-Sequence"] = str(last)
        h["Nats-Batch-Commit"] = "1"
        ack = await self._request(batch[-1].subject, batch[-1].data, h)
        end = int(ack["seq"])
        count = int(ack.get("count", last))
        return Appended(range(end - count + 1, end + 1))

    async def last_seq(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def last_seq_on(self, filters: Sequence[str]) -> int:
        last = 0
        for subject in filters:  # the stream leader answers: no replica lag
            try:
                msg = await self.js.get_last_msg(self.stream, subject, direct=True)
            except NotFoundError:
                continue
            last = max(last, int(msg.seq or 0))
        return last

    def tail(self, filters: Sequence[str], start_seq: int = 1) -> JetStreamTail:
        if self.opener is not None:
            from agents.log.served_tail import ServedTail

            return ServedTail(self, list(filters), start_seq, self.opener)
        return JetStreamTail(self, list(filters), start_seq)

    async def read(self, filters: Sequence[str], start_seq: int = 1) -> list[Record]:
        out: list[Record] = []
        tail = self.tail(filters, start_seq)
        async with tail:
            if await tail.empty():
                return out
            async for batch in tail:
                out.extend(batch)
                if tail.pending == 0:
                    break
        return out


# A consumer with several filters costs the server time in proportion to the subjects they
# match in the whole stream (about 0.3 s per million events, at any start), where one filter
# costs nothing. So a tail that starts near the end of a large stream (a cold start after a
# snapshot, a client following its run) asks for one covering filter and drops the rest here.
COSTLY_STREAM = 100_000  # events: below this, several filters cost little
SHORT_TAIL = 100  # a tail at most 1/SHORT_TAIL of the stream is short
STREAM_INFO_WAIT_S = 2.0  # a credential without stream info gets no answer, only a timeout
RELEASE_WAIT_S = 1.0  # deleting a finished tail's consumer: best effort


class JetStreamTail:
    """An ordered push consumer (server-side filters) delivering batches of records."""

    def __init__(self, log: JetStreamLog, filters: list[str], start_seq: int) -> None:
        self._log = log
        self._filters = filters
        self._start = max(start_seq, 1)
        self._buf: list[Record] = []
        self._ready = asyncio.Event()
        self._sub: Any = None
        self._wanted: list[str] | None = None  # set when the server sends a covering filter
        self.pending = -1

    async def _on_msg(self, msg: Msg) -> None:
        seq, ts, pending = parse_ack_reply(msg.reply)
        self.pending = pending
        if self._wanted is not None and not any(
                subject_matches(f, msg.subject) for f in self._wanted):
            if pending == 0:
                self._ready.set()  # an empty batch: the caller learns it has caught up
            return
        self._buf.append(
            Record(seq=seq, subject=msg.subject, data=msg.data, time=ts / 1e9, headers=msg.headers)
        )
        self._ready.set()

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
        cfg = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._start,
            filter_subjects=filters if len(filters) > 1 else None,
            inactive_threshold=30.0,
        )
        self._sub = await self._log.js.subscribe(
            filters[0],
            stream=self._log.stream,
            cb=self._on_msg,
            ordered_consumer=True,
            config=cfg,
            idle_heartbeat=2.0,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )

    async def empty(self) -> bool:
        """True when nothing matched at the start and nothing has arrived."""
        await self.start()
        if self._buf:
            return False
        info = await self._sub.consumer_info()
        return bool(info.num_pending == 0 and info.delivered.consumer_seq == 0 and not self._buf)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                async with asyncio.timeout(RELEASE_WAIT_S):  # closing never waits on NATS
                    await sub.unsubscribe()
            except Exception:  # the connection may already be gone; nothing to release then
                pass
            await self._release(sub)

    async def _release(self, sub: Any) -> None:
        """Delete the consumer now rather than when the server notices nobody listens
        (streams hold a bounded number of consumers)."""
        name = getattr(sub, "_consumer", None)
        if name and not self._log.nc.is_closed:
            try:
                async with asyncio.timeout(RELEASE_WAIT_S):
                    await self._log.js.delete_consumer(self._log.stream, name)
            except (nats.errors.Error, TimeoutError) as exc:  # it expires on its own
                log.debug("could not delete consumer %s now: %r", name, exc)

    async def __aenter__(self) -> JetStreamTail:
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
            batch, self._buf = self._buf, []
            if batch or self.pending == 0:
                yield batch
