"""Raw subscriptions: a subscription whose messages the parser (agents/nats/parser.py)
hands over as tuples, a socket read at a time; on a plain nats-py client, the same tuples
built from its messages."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agents.nats.parser import RawMsg, RawSink

log = logging.getLogger(__name__)
UNSUBSCRIBE_WAIT_S = 1.0  # closing never waits on NATS


async def raw_subscribe(nc: Client, subject: str, sink: RawSink) -> Subscription:
    sinks: dict[int, RawSink] | None = getattr(nc._ps, "sinks", None)
    if sinks is None:  # a plain nats-py client: its messages, as raw tuples
        async def deliver(msg: Msg) -> None:
            if not sink.items:
                sink.wake()
            sink.items.append(_as_raw(msg))

        return await nc.subscribe(subject, cb=deliver, pending_msgs_limit=-1,
                                  pending_bytes_limit=-1)
    sub = await nc.subscribe(subject)
    sinks[sub._id] = sink
    return sub


def _as_raw(msg: Msg) -> RawMsg:
    raw = None
    if msg.headers:
        lines = [f"{k}: {v}" for k, v in msg.headers.items() if k not in ("Status",
                                                                          "Description")]
        status = msg.headers.get("Status")
        head = f"NATS/1.0 {status} {msg.headers.get('Description', '')}".rstrip() if status \
            else "NATS/1.0"
        raw = "\r\n".join([head, *lines, "", ""]).encode()
    return msg.subject.encode(), (msg.reply or "").encode(), raw, msg.data


async def unsubscribe(nc: Client, sub: Subscription) -> None:
    sinks: dict[int, RawSink] | None = getattr(nc._ps, "sinks", None)
    if sinks is not None:
        sinks.pop(sub._id, None)
    try:
        async with asyncio.timeout(UNSUBSCRIBE_WAIT_S):  # closing never waits on NATS
            await sub.unsubscribe()
    except (nats.errors.Error, TimeoutError) as exc:  # the connection is gone, or going
        log.debug("unsubscribing from %s: %r", sub.subject, exc)

