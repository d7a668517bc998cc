"""agents/nats/publish.py: a batch's messages written in one go arrive as nats-py's own
``publish`` would send them (subject, headers, payload, order); a bad subject, a payload
over the server's limit or a header value with a line break (which nats-py would drop
silently) is refused before anything of the batch is sent."""

from __future__ import annotations

import asyncio

import pytest
from nats import errors

from agents.nats.connect import connect
from agents.nats.publish import hpub, publish_many
from agents.nats.server import NatsServer

pytestmark = pytest.mark.anyio


def test_one_message_is_the_protocol_s_hpub() -> None:
    assert hpub("a.b", {"Nats-Msg-Id": "t1.x", "K": "7"}, b"xy") == (
        b"HPUB a.b 37 39\r\nNATS/1.0\r\nNats-Msg-Id: t1.x\r\nK: 7\r\n\r\nxy\r\n")


async def test_messages_arrive_as_nats_py_would_send_them(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url, "publish-many")
    try:
        got: list[tuple[str, dict[str, str], bytes]] = []
        done = asyncio.Event()

        async def on_msg(msg: object) -> None:
            got.append((msg.subject, dict(msg.headers or {}), msg.data))  # type: ignore[attr-defined]
            if len(got) == 6:
                done.set()

        await nc.subscribe("pm.>", cb=on_msg)
        items = [(f"pm.t{i}.ev", {"Nats-Msg-Id": f"t{i}.ev", "Seq": str(i)}, b"p" * i)
                 for i in range(3)]
        await publish_many(nc, items)
        for subject, headers, data in items:
            await nc.publish(subject, data, headers=dict(headers))
        await asyncio.wait_for(done.wait(), 10)
        assert got[:3] == got[3:] == [(s, dict(h), d) for s, h, d in items]
    finally:
        await nc.close()


@pytest.mark.parametrize(("item", "error"), [
    (("pm.a b", {"K": "v"}, b""), errors.BadSubjectError),
    (("", {"K": "v"}, b""), errors.BadSubjectError),
    (("pm.a", {"K": "v\r\nX: injected"}, b""), errors.BadHeaderError),
    (("pm.a", {"K": "v"}, b"x" * (2 * 1024 * 1024)), errors.MaxPayloadError),
])
async def test_a_bad_message_is_refused_and_nothing_of_the_batch_is_sent(
        nats_server: NatsServer, item: tuple[str, dict[str, str], bytes],
        error: type[Exception]) -> None:
    nc = await connect(nats_server.url, "publish-many-bad")
    try:
        sent = nc.stats["out_msgs"]
        with pytest.raises(error):
            await publish_many(nc, [("pm.ok", {"K": "v"}, b"fine"), item])
        assert nc.stats["out_msgs"] == sent
    finally:
        await nc.close()
