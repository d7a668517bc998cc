"""The nats-server a stack starts runs with the share of the cores ADR 0023 gives it."""

from __future__ import annotations

import os

import psutil
import pytest

from agents.nats.server import NatsServer
from agents.proc.cores import half_the_cores


def test_the_started_server_has_half_the_cores(nats_server: NatsServer) -> None:
    if os.environ.get("GOMAXPROCS"):
        pytest.skip("GOMAXPROCS set for this run: the server keeps the user's setting")
    assert nats_server.proc is not None
    env = psutil.Process(nats_server.proc.pid).environ()
    assert env.get("GOMAXPROCS") == str(half_the_cores())
