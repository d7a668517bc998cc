"""Replay 1M events: the state a live control plane folded equals a replay of the log, and
a cold start from a snapshot plus the tail equals both (``-m chaos``: minutes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.control.plane import ControlPlane
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer, free_port
from bench.failover import FAST_CONF, _publish
from bench.replay import recorded
from cli.audit_verify import audit_verify
from cli.client_cmds import Target
from tests.helpers import until

pytestmark = [pytest.mark.anyio, pytest.mark.chaos, pytest.mark.timeout(900)]
EVENTS = 1_000_000


async def test_replay_of_a_million_events_equals_the_live_state(tmp_path: Path) -> None:
    (tmp_path / "nats.conf").write_text(FAST_CONF)
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port(), conf=tmp_path / "nats.conf")
    server.start()
    try:
        nc = await connect(server.url, "chaos-replay")
        await ensure_streams(nc.jetstream())
        # the log first: the recorded fencing tokens are the sequences they will have
        await _publish(nc.jetstream(), recorded(EVENTS))
        plane_nc = await connect(server.url, "live-control")
        live = ControlPlane(plane_nc, JetStreamLog(plane_nc), snapshot_every=EVENTS // 2)
        running = asyncio.create_task(live.run())
        await until(lambda: _at(live, EVENTS), 600, "the live fold to reach 1M events")
        assert live.snapshotter is not None
        await until(lambda: _true(live.snapshotter.saved.is_set()), 60, "a snapshot")
        result = await audit_verify(Target(server.url))
        assert result["live_state"]["checked"] and result["live_state"]["equal"], result
        assert result["snapshot"]["checked"] and result["snapshot"]["equal"], result
        assert result["events"] >= EVENTS and not result["violations"]  # + agents' own
        cold = ControlPlane(nc, JetStreamLog(nc))
        cold_run = asyncio.create_task(cold.run())
        log = JetStreamLog(nc)

        async def same_state() -> bool:  # both at the end of the log (agents append too)
            end = await log.last_seq()
            return (cold.folder.position >= end and live.folder.position >= end
                    and cold.folder.board.state_hash() == live.folder.board.state_hash())

        await until(same_state, 120, "the cold start to reach the live state")
        assert cold.folder.folded < EVENTS // 2
        for task in (running, cold_run):
            task.cancel()
        await plane_nc.close()
        await nc.close()
    finally:
        server.stop()


async def _at(plane: ControlPlane, seq: int) -> bool:
    return plane.folder.position >= seq


async def _true(value: bool) -> bool:
    return value
