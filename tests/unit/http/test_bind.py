"""The HTTP agent's listening socket."""

from __future__ import annotations

import socket

import pytest

from agents.http.app import bind
from dtf_core.errors import InvalidInput


def test_the_socket_says_tcp_so_that_asyncio_turns_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; without it,
    every answer on a kept-alive connection waited ~40 ms for a delayed ACK."""
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_a_port_in_use_is_a_clear_error() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(InvalidInput, match="--http-port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
