"""Snapshots against a real server: the control plane stores them in the object store, and
a cold start loads the newest and folds only the tail, reaching the same state."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.control.plane import ControlPlane
from agents.log import snapshots
from agents.log.jetstream import JetStreamLog
from dtf_core.spec import TaskSpec
from tests.helpers import until
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio


async def test_a_cold_start_loads_the_snapshot_and_folds_only_the_tail(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=1, slots=4, control=True) as h:
        plane: ControlPlane = h.agents["control"]
        snap = snapshots.Snapshotter(h.nc.jetstream(), plane.folder, every_events=100)
        await h.start("snapshotter", snap)
        first = (await h.api.submit([TaskSpec(type="noop")] * 100)).ids
        for task_id in first:
            await h.wait_status(task_id, {"succeeded"})
        await until(lambda: _true(snap.saved.is_set()), 20, "a snapshot to be stored")
        taken = snap.saved_at
        await h.stop("snapshotter")
        more = (await h.api.submit([TaskSpec(type="noop")] * 20)).ids
        for task_id in more:
            await h.wait_status(task_id, {"succeeded"})

        cold_nc = await h.conn("cold")
        cold = ControlPlane(cold_nc, JetStreamLog(cold_nc), snapshot_every=10**9)
        await h.start("cold", cold, cold.ready)
        end = plane.folder.position
        await until(lambda: _true(cold.folder.position >= end), 20, "the cold start to catch up")
        assert cold.folder.board.state_hash() == plane.folder.board.state_hash()
        assert cold.folder.folded <= end - taken, "it folded only the tail after the snapshot"
        assert len(cold.folder.board.tasks) == 120


async def test_a_damaged_snapshot_is_ignored_and_the_whole_log_replayed(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=1, control=True) as h:
        plane: ControlPlane = h.agents["control"]
        task_id = (await h.api.submit([TaskSpec(type="noop")])).ids[0]
        await h.wait_status(task_id, {"succeeded"})
        store = await h.nc.jetstream().object_store("dtf-snapshots")
        await store.put(snapshots.OBJECT, b"\x00not a snapshot")
        cold_nc = await h.conn("cold")
        cold = ControlPlane(cold_nc, JetStreamLog(cold_nc))
        await h.start("cold", cold, cold.ready)
        end = plane.folder.position
        await until(lambda: _true(cold.folder.position >= end), 20, "the replay to catch up")
        assert cold.folder.board.state_hash() == plane.folder.board.state_hash()


async def _true(value: bool) -> bool:
    return value
