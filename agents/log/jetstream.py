"""The JetStream adapter of the event-log port.

Appends of more than one message use JetStream's atomic batch publish: every message
carries ``Nats-Batch-Id``/``Nats-Batch-Sequence`` and only the last (``Nats-Batch-Commit``)
gets a PubAck, so a batch costs one fsync and one round trip.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agents.log.port import (
    MAX_BATCH,
    Append,
    AppendConflict,
    Appended,
    DuplicateBatch,
    Record,
)
from agents.log.tail import Tail
from agents.nats.publish import publish_many
from dtf_core import commands as cmds
from dtf_core.errors import DTFError, InvalidInput, Unavailable
from dtf_core.replies import TailOpened
from dtf_core.subjects import EVENTS_STREAM

log = logging.getLogger(__name__)
ERR_WRONG_LAST_SEQ = 10071
ERR_BATCH_DUPLICATE = 10201
ERR_MSG_TOO_BIG = 10054
# a message with this id is still being stored (a resend while the first copy waits on
# a new stream leader): the first copy may yet land, so the sender tries again later
ERR_DUPLICATE_IN_PROCESS = 10158


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
    if code == ERR_DUPLICATE_IN_PROCESS:
        raise Unavailable(f"an earlier copy of this append is still being stored: {desc}")
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
        await publish_many(self.nc, [
            (item.subject, {**_headers(item), "Nats-Batch-Id": batch_id,
                            "Nats-Batch-Sequence": str(i)}, item.data)
            for i, item in enumerate(batch[:-1], start=1)])
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

    def tail(self, filters: Sequence[str], start_seq: int = 1) -> Tail:
        return Tail(self, list(filters), start_seq, self.opener)

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
