"""flush() on DTF's client (agents/nats/fast_client.py) is a barrier: its PING leaves after
every command queued before it, so when it returns the server has seen them. nats-py 2.16
writes the PING ahead of what still waits for its flusher task; under load, a subscription
made and "flushed" was not yet there for another client's request (no responders)."""

from __future__ import annotations

from typing import Any

import pytest

from agents.nats.connect import connect
from agents.nats.server import NatsServer

pytestmark = pytest.mark.anyio


async def test_flush_pings_after_what_was_queued_before_it(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url, "flush-order")
    try:
        transport: Any = nc._transport
        wire: list[bytes] = []
        write, writelines = transport.write, transport.writelines

        def wrote(data: bytes) -> None:
            wire.append(bytes(data))
            write(data)

        def wrote_lines(data: list[bytes]) -> None:
            wire.append(b"".join(data))
            writelines(data)

        transport.write, transport.writelines = wrote, wrote_lines
        await nc.subscribe("flush.sub")
        await nc.publish("flush.pub", b"x")
        await nc.flush()
        sent = b"".join(wire)
        assert sent.count(b"PING\r\n") == 1, sent
        assert sent.index(b"SUB flush.sub") < sent.index(b"PUB flush.pub") < sent.index(b"PING")
    finally:
        await nc.close()
