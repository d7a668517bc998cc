"""Answering a query's request: its result or why not, always into the requester's inbox."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.natsauth.permissions import reply_target
from agents.nats.connect import MAX_PAYLOAD
from dtf_core.errors import DTFError

log = logging.getLogger(__name__)
MAX_ANSWER = MAX_PAYLOAD - 4096  # room for the headers
_encoder = msgspec.json.Encoder()


async def reply(nc: Client, msg: Msg, what: str, work: Callable[[], Awaitable[object]],
                failed: Callable[[str, bool], object]) -> None:
    """Answer a query: its result, or why not (one broad except per request: answer,
    never crash)."""
    reply: object
    try:
        reply = await work()
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        reply = failed(f"invalid request: {exc}", False)
    except DTFError as exc:
        reply = failed(str(exc), exc.retryable)
    except Exception as exc:
        log.exception("%s query failed", what)
        reply = failed(f"internal error: {exc!r}", False)
    data = _encoder.encode(reply)
    if len(data) > MAX_ANSWER:
        data = _encoder.encode(failed(
            f"the answer is {len(data) // 1024} KiB, more than a NATS message carries "
            f"({MAX_ANSWER // 1024} KiB): narrow the query (filters, a lower limit)", False))
    await send_answer(nc, msg, data)


async def send_answer(nc: Client, msg: Msg, data: bytes) -> None:
    """Answers go into an inbox only: a requester names the reply subject, and one on
    ``dtf.evt.>``, ``$JS.>`` or ``$SYS.>`` would act as whatever is there."""
    target = reply_target(msg.reply, None, None)
    if target is None:
        if msg.reply:
            log.warning("not answering a query into %r: not an inbox", msg.reply[:200])
        return
    try:
        await nc.publish(target, data)
    except nats.errors.Error as exc:
        log.warning("a query's answer was not sent: %r", exc)
