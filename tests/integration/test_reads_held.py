"""agents/nats/reading.py against a real server: while a connection's reads are held,
nothing it is sent reaches its process; afterwards everything does, in order, none lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg

from agents.nats.connect import connect
from agents.nats.reading import reads_held
from agents.nats.server import NatsServer

pytestmark = pytest.mark.anyio
N = 2000


async def test_held_reads_deliver_nothing_then_everything(nats_server: NatsServer) -> None:
    sender = await connect(nats_server.url, "held-sender")
    held = await connect(nats_server.url, "held-reader")
    try:
        got: list[bytes] = []
        all_in = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            got.append(msg.data)
            if len(got) == N:
                all_in.set()

        await held.subscribe("held.x", cb=on_msg)
        await held.flush()
        transport: Any = held._transport._io_writer.transport
        with reads_held(held):
            assert not transport.is_reading()
            for i in range(N):
                await sender.publish("held.x", str(i).encode() * 50)
            await sender.flush()  # the server has them, and has written what fits to `held`
            for _ in range(20):  # turns of the loop in which an unheld reader would read
                await asyncio.sleep(0)
            assert got == []
            await held.publish("held.y", b"a held connection still writes")
        assert transport.is_reading()
        async with asyncio.timeout(10):
            await all_in.wait()
        assert got == [str(i).encode() * 50 for i in range(N)]
    finally:
        await held.close()
        await sender.close()


async def test_holding_a_closed_connection_is_harmless(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url, "held-closed")
    await nc.close()
    with reads_held(nc):
        pass
