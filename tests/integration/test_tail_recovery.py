"""A tail keeps the guarantees of an ordered consumer itself (agents/log/consumer.py): on a
missed delivery, a heartbeat that names another last delivery, or a consumer gone from the
server, it opens a new one after the last record it delivered. Nothing is lost, nothing is
delivered twice, in order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats.js.api import StreamConfig

from agents.log import consumer as consumer_module
from agents.log.jetstream import JetStreamLog
from agents.log.port import Append
from agents.nats.connect import connect
from agents.nats.server import NatsServer, free_port
from dtf_core.errors import Unavailable
from tests.helpers import until

pytestmark = pytest.mark.anyio
WAIT_S = 10.0


@pytest.fixture
async def stream(nats_server: NatsServer) -> AsyncIterator[tuple[JetStreamLog, str, Any]]:
    unique = uuid.uuid4().hex[:12]
    nc = await connect(nats_server.url, "tail-recovery")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=f"R{unique}", subjects=[f"r{unique}.>"]))
    try:
        yield JetStreamLog(nc, stream=f"R{unique}"), f"r{unique}", js
    finally:
        await js.delete_stream(f"R{unique}")
        await nc.close()


async def append(log: JetStreamLog, prefix: str, first: int, n: int) -> None:
    for i in range(first, first + n):
        await log.append([Append(subject=f"{prefix}.e", data=str(i).encode(),
                                 msg_id=f"{prefix}-{i}")])


async def collect(tail: Any, want: int) -> list[int]:
    got: list[int] = []
    with anyio.fail_after(WAIT_S):
        async for batch in tail:
            got.extend(int(r.data) for r in batch)
            if len(got) >= want:
                return got
    return got


async def test_a_missed_delivery_reopens_after_the_last_record(
        stream: tuple[JetStreamLog, str, Any]) -> None:
    log, prefix, _ = stream
    await append(log, prefix, 0, 5)
    async with log.tail([f"{prefix}.>"]) as tail:
        assert await collect(tail, 5) == [0, 1, 2, 3, 4]
        sink = tail._sink
        assert sink is not None
        # a delivery the server says is consumer sequence 9: 6 to 8 never arrived
        sink.items.append((f"{prefix}.e".encode(), b"$JS.ACK.S.C.1.99.9.1.0", None, b"99"))
        sink.wake()
        await append(log, prefix, 5, 3)
        assert await collect(tail, 3) == [5, 6, 7]  # not 99; from after 4, each once
        assert tail._next_cseq == 4  # a new consumer delivered them (the old one's: 9)


async def test_a_heartbeat_naming_another_last_delivery_reopens(
        stream: tuple[JetStreamLog, str, Any]) -> None:
    log, prefix, _ = stream
    await append(log, prefix, 0, 3)
    async with log.tail([f"{prefix}.>"]) as tail:
        assert await collect(tail, 3) == [0, 1, 2]
        assert tail._sink is not None
        tail._sink.items.append((b"x", b"", b"NATS/1.0 100 Idle Heartbeat\r\n"
                                 b"Nats-Last-Consumer: 7\r\n\r\n", b""))
        tail._sink.wake()
        await append(log, prefix, 3, 2)
        assert await collect(tail, 2) == [3, 4]
        assert tail._next_cseq == 3  # a new consumer delivered them


async def test_a_consumer_gone_from_the_server_is_replaced(
        stream: tuple[JetStreamLog, str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "HEARTBEAT_S", 0.25)
    log, prefix, js = stream
    await append(log, prefix, 0, 2)
    async with log.tail([f"{prefix}.>"]) as tail:
        assert await collect(tail, 2) == [0, 1]
        await js.delete_consumer(log.stream, tail._consumer)  # as a restarted server forgets it
        await append(log, prefix, 2, 3)
        assert await collect(tail, 3) == [2, 3, 4]
        assert tail._next_cseq == 4  # a new consumer delivered them


async def test_a_reconnect_reopens_at_once(tmp_path: Path) -> None:
    """The server restarts: its consumers (memory, one replica) are gone. The tail opens a
    new one when the connection comes back, not three missed heartbeats later."""
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    server.start()
    try:
        nc = await connect(server.url, "tail-restart")
        await nc.jetstream().add_stream(StreamConfig(name="RR", subjects=["rr.>"]))
        log = JetStreamLog(nc, stream="RR")
        await append(log, "rr", 0, 2)
        async with log.tail(["rr.>"]) as tail:
            assert await collect(tail, 2) == [0, 1]
            before = tail._sink
            server.stop()
            server.start()
            await until(lambda: _true(nc.is_connected), 10, "the client to reconnect")
            # a new consumer now: the watchdog would wait for 6 s of silence
            await until(lambda: _true(tail._sink is not before), 2, "a reopen on reconnect")

            async def appended() -> bool:  # JetStream answers once it has loaded its store
                try:
                    await append(log, "rr", 2, 2)  # message ids: a retry stores nothing twice
                except Unavailable:
                    return False
                return True

            await until(appended, 20, "JetStream to take appends again")
            with anyio.fail_after(consumer_module.HEARTBEAT_S * 2):  # the watchdog: 6 s
                assert await collect(tail, 2) == [2, 3]
        await nc.close()
    finally:
        server.stop()


async def _true(value: bool) -> bool:
    return value
