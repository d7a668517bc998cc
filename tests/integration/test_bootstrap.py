"""`dtf up`'s set-up (streams, then the credentials' events) on a real server: a
connection closed for good meanwhile is opened again, not retried until the deadline."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client

from agents.host.servers import ConnectionLost, bootstrap
from agents.nats.connect import connect
from agents.nats.server import NatsServer
from dtf_core import subjects

pytestmark = pytest.mark.anyio


def closing(server: NatsServer, closed: int) -> tuple[list[Client], object]:
    """A connector whose first ``closed`` connections are closed once handed over, as the
    server closes a client it refuses on a reconnect."""
    opened: list[Client] = []

    async def connect_admitted() -> Client:
        nc = await connect(server.url, "dtf-up-test")
        opened.append(nc)
        if len(opened) <= closed:
            await nc.close()
        return nc

    return opened, connect_admitted


async def test_a_connection_closed_while_setting_up_is_opened_again(
        nats_server: NatsServer, tmp_path: Path) -> None:
    opened, connect_admitted = closing(nats_server, closed=1)
    await bootstrap(connect_admitted, 1, tmp_path, [])  # type: ignore[arg-type]
    assert len(opened) == 2 and all(nc.is_closed for nc in opened)
    nc = await connect(nats_server.url, "check")
    try:
        info = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        assert info.config.name == subjects.EVENTS_STREAM
    finally:
        await nc.close()


async def test_a_connection_that_keeps_closing_is_a_clear_error(
        nats_server: NatsServer, tmp_path: Path) -> None:
    opened, connect_admitted = closing(nats_server, closed=3)
    with pytest.raises(ConnectionLost, match="dtf up's connection was closed"):
        await bootstrap(connect_admitted, 1, tmp_path, [], attempts=3)  # type: ignore[arg-type]
    assert len(opened) == 3
