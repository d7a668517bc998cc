"""Inline subscriptions (agents/nats/fast_client.py, ADR 0022) against a real server: the
callback runs on the connection's reading task, in order, nothing lost; a callback that
fails does not stop the connection; requests (whose answers come inline) are answered,
time out and see no responders as with nats-py."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.aio.msg import Msg

from agents.nats.connect import connect
from agents.nats.fast_client import inline
from agents.nats.server import NatsServer

pytestmark = pytest.mark.anyio
N = 500


async def test_an_inline_callback_runs_on_the_reading_task_in_order(
    nats_server: NatsServer,
) -> None:
    sender = await connect(nats_server.url, "inline-sender")
    nc = await connect(nats_server.url, "inline-reader")
    try:
        got: list[tuple[asyncio.Task[object] | None, bytes]] = []
        all_in = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            got.append((asyncio.current_task(), msg.data))
            if len(got) == N:
                all_in.set()

        sub = inline(nc, await nc.subscribe("inline.x", cb=on_msg))
        await nc.flush()
        for i in range(N):
            await sender.publish("inline.x", str(i).encode())
        await sender.flush()
        await asyncio.wait_for(all_in.wait(), 10)
        assert [data for _, data in got] == [str(i).encode() for i in range(N)]
        assert {task for task, _ in got} == {nc._reading_task}
        assert sub._pending_size == 0 and sub._pending_queue.empty()
    finally:
        await sender.close()
        await nc.close()


async def test_a_failing_inline_callback_does_not_stop_the_connection(
    nats_server: NatsServer,
) -> None:
    nc = await connect(nats_server.url, "inline-failing")
    try:
        got: list[bytes] = []
        done = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            if msg.data == b"boom":
                raise RuntimeError("the callback failed on boom")
            got.append(msg.data)
            if msg.data == b"last":
                done.set()

        inline(nc, await nc.subscribe("inline.y", cb=on_msg))
        for data in (b"first", b"boom", b"last"):
            await nc.publish("inline.y", data)
        await asyncio.wait_for(done.wait(), 10)
        assert got == [b"first", b"last"]
        assert any("failed on boom" in e for e in nc.server_errors)  # type: ignore[attr-defined]
        assert nc.is_connected
    finally:
        await nc.close()


async def test_requests_are_answered_time_out_and_see_no_responders(
    nats_server: NatsServer,
) -> None:
    nc = await connect(nats_server.url, "inline-requests")
    server = await connect(nats_server.url, "inline-responder")
    try:
        async def echo(msg: Msg) -> None:
            await server.publish(msg.reply, b"re:" + msg.data)

        async def silent(msg: Msg) -> None:
            pass

        await server.subscribe("inline.echo", cb=echo)
        await server.subscribe("inline.silent", cb=silent)
        await server.flush()
        answers = await asyncio.gather(*(nc.request("inline.echo", str(i).encode(), timeout=10)
                                         for i in range(200)))
        assert [a.data for a in answers] == [f"re:{i}".encode() for i in range(200)]
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("inline.nobody", b"x", timeout=5)
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request("inline.silent", b"x", timeout=0.2)
        assert not nc._resp_map  # nothing left waiting
    finally:
        await server.close()
        await nc.close()
