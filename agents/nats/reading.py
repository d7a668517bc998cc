"""Leaving a connection's socket unread for a while.

An agent that takes a log tail in batches (the projector, between its paced writes) need
not be woken for every message: while its reads are held, what the server sends waits in
the socket's buffers and then in the server's pending buffer for the connection (an
ordered consumer's flow control stops the server until the reader answers), and arrives in
one read afterwards. Only for a connection that carries nothing anyone waits on: requests,
replies and heartbeats' answers on it wait too (hold reads well under the heartbeats'
interval).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from nats.aio.client import Client


def _socket(nc: Client) -> tuple[asyncio.BaseTransport, Any] | None:
    """The connection's socket transport and its stream reader (plain TCP or TLS), or None
    where it has none to pause (a WebSocket, not connected)."""
    wire = getattr(nc, "_transport", None)
    writer = getattr(wire, "_io_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or not hasattr(transport, "pause_reading"):
        return None
    return transport, getattr(wire, "_io_reader", None)


@contextlib.contextmanager
def reads_held(nc: Client) -> Iterator[None]:
    """Inside, ``nc``'s socket is not read; afterwards it is read again (unless its stream
    reader had paused it for a full buffer: the reader resumes it once drained)."""
    held = _socket(nc)
    if held is None or held[0].is_closing():
        yield
        return
    transport, reader = held
    transport.pause_reading()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        now = _socket(nc)  # a reconnect replaces the transport: the new one reads anyway
        if now is not None and now[0] is transport and not transport.is_closing() \
                and not getattr(reader, "_paused", False):
            transport.resume_reading()  # type: ignore[attr-defined]
