"""agents/wire/requests.py against a real server: a request runs in its caller's task, so
its message leaves in the same write as what the caller queued just before it (a worker's
lease ack and its report); the caller's own cancellation stays a cancellation (only a
publish the server refused becomes Forbidden: tests/integration/test_cli_up.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg

from agents.nats.connect import connect
from agents.nats.server import NatsServer
from agents.wire.requests import Requester
from dtf_core import commands as cmds
from dtf_core import subjects

pytestmark = pytest.mark.anyio


async def test_a_request_leaves_in_the_write_of_what_was_queued_before_it(
        nats_server: NatsServer) -> None:
    api = await connect(nats_server.url, "requests-api")
    nc = await connect(nats_server.url, "requests-client")
    try:
        async def answer(msg: Msg) -> None:
            await api.publish(msg.reply, cmds.encode(cmds.Reply(ok=True)))

        await api.subscribe(subjects.Q_STATUS, cb=answer)
        await api.flush()
        transport: Any = nc._transport  # the socket writes that carry our messages
        writes: list[bytes] = []
        write = transport.writelines

        def counted(data: list[bytes]) -> None:
            sent = b"".join(data)
            if b"requests.before" in sent or subjects.Q_STATUS.encode() in sent:
                writes.append(sent)  # not a PONG to the server's first PING (at 2 s)
            write(data)

        transport.writelines = counted
        await nc.publish("requests.before", b"ack")  # queued; the flusher is signalled
        await Requester(nc).call(cmds.GetStatus())
        assert len(writes) == 1
        assert b"requests.before" in writes[0] and subjects.Q_STATUS.encode() in writes[0]
    finally:
        await nc.close()
        await api.close()


async def test_a_cancelled_request_is_cancelled_not_refused(nats_server: NatsServer) -> None:
    api = await connect(nats_server.url, "requests-api-silent")
    nc = await connect(nats_server.url, "requests-client-cancelled")
    try:
        got = asyncio.Event()

        async def hold(msg: Msg) -> None:
            got.set()  # and never answer

        await api.subscribe(subjects.Q_STATUS, cb=hold)
        await api.flush()
        call = asyncio.create_task(Requester(nc, timeout=30).call(cmds.GetStatus()))
        await asyncio.wait_for(got.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await nc.close()
        await api.close()
