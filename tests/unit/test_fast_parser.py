"""The client's protocol parser (agents/nats/parser.py): the same messages and protocol
calls whatever way the socket cuts the bytes; raw sinks get theirs in order, woken once per
read; everything else reaches nats-py's handlers as before."""

from __future__ import annotations

import random
from typing import Any

import pytest
from nats.errors import ProtocolError

from agents.nats.parser import FastParser, RawSink

pytestmark = pytest.mark.anyio


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:
        self.calls.append(("msg", sid, subject, reply, data, headers))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


def hmsg(subject: str, sid: int, reply: str, headers: bytes, payload: bytes) -> bytes:
    total = len(headers) + len(payload)
    head = f"HMSG {subject} {sid} {reply + ' ' if reply else ''}{len(headers)} {total}\r\n"
    return head.encode() + headers + payload + b"\r\n"


def msg(subject: str, sid: int, reply: str, payload: bytes) -> bytes:
    head = f"MSG {subject} {sid} {reply + ' ' if reply else ''}{len(payload)}\r\n"
    return head.encode() + payload + b"\r\n"


HDR = b"NATS/1.0\r\nNats-Msg-Id: m1\r\n\r\n"
STREAM = b"".join([
    b'INFO {"server_id":"x"}\r\n',
    hmsg("dtf.evt.a", 7, "$JS.ACK.S.C.1.1.1.10.2", HDR, b"\x81\xa1a\x01"),
    b"PING\r\n",
    msg("other", 3, "_INBOX.r", b"hello\r\nworld"),  # a CRLF inside a payload
    hmsg("dtf.evt.b", 7, "$JS.ACK.S.C.1.2.2.11.1", HDR, b""),
    b"+OK\r\n",
    hmsg("x", 7, "", b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 2\r\n\r\n", b""),
    msg("dtf.evt.c", 7, "", b"z" * 5000),
    b"PONG\r\n",
    b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n",
])
RAW = [(b"dtf.evt.a", b"$JS.ACK.S.C.1.1.1.10.2", HDR, b"\x81\xa1a\x01"),
       (b"dtf.evt.b", b"$JS.ACK.S.C.1.2.2.11.1", HDR, b""),
       (b"x", b"", b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 2\r\n\r\n", b""),
       (b"dtf.evt.c", b"", None, b"z" * 5000)]
CALLS = [("info", {"server_id": "x"}), ("ping",),
         ("msg", 3, b"other", b"_INBOX.r", b"hello\r\nworld", None), ("pong",),
         ("err", "'permissions violation for publish to \"x\"'")]


@pytest.mark.parametrize("seed", range(40))
async def test_any_cut_of_the_bytes_parses_the_same(seed: int) -> None:
    rng = random.Random(seed)
    nc = FakeClient()
    parser = FastParser(nc)
    wakes = 0

    def woken() -> None:
        nonlocal wakes
        wakes += 1

    sink = RawSink(woken)
    parser.sinks[7] = sink
    reads = 0
    pos = 0
    while pos < len(STREAM):
        step = rng.choice([1, 2, 7, 50, 300, 6000])
        await parser.parse(STREAM[pos:pos + step])
        pos += step
        reads += 1
    assert sink.items == RAW
    assert nc.calls == CALLS
    assert 1 <= wakes <= min(reads, len(RAW))
    assert not parser.buf


async def test_without_a_sink_every_message_goes_to_nats_py() -> None:
    nc = FakeClient()
    await FastParser(nc).parse(STREAM)
    assert [c[1:3] for c in nc.calls if c[0] == "msg"] == [
        (7, b"dtf.evt.a"), (3, b"other"), (7, b"dtf.evt.b"), (7, b"x"), (7, b"dtf.evt.c")]


@pytest.mark.parametrize("bad", [b"HMSG a b 1 2\r\nxx\r\n", b"WHAT\r\n", b"MSG a 1 x\r\n"])
async def test_malformed_protocol_is_a_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        await FastParser(FakeClient()).parse(bad)
