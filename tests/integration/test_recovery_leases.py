"""Recovery of leases its worker never got: the worker heartbeats, but its heartbeats do
not list the lease; after the grace period the lease is requeued and runs again."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.worker.agent import WorkerAgent
from agents.worker.leases import Attempt
from dtf_core.events.task import TaskLeased, TaskRequeued, TaskSucceeded
from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL
from tests.gates import Gate
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio


class LosesItsFirstLease(WorkerAgent):
    """A fault: the first lease message is acknowledged and then lost inside the worker."""

    lost = False

    def _on_lease(self, attempt: Attempt) -> None:
        if not self.lost:
            self.lost = True  # taken off the consumer (acknowledged), then dropped
            return
        super()._on_lease(attempt)


async def test_a_lease_the_worker_never_got_is_requeued(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0, heartbeat=0.2) as h:
        worker = LosesItsFirstLease(await h.conn("w1"), worker_id="w1", slots=1,
                                    heartbeat_interval=0.2)
        await h.start("worker:w1", worker, worker.ready)
        task_id = (await h.api.submit([TaskSpec(type="noop")])).ids[0]
        row = await h.wait_status(task_id, TERMINAL, timeout=20)
        assert row.status == "succeeded", row
        events = [e for _, e in await h.events(task_id)]
        assert [type(e) for e in events if isinstance(e, TaskLeased | TaskRequeued)] == [
            TaskLeased, TaskRequeued, TaskLeased]
        requeued = next(e for e in events if isinstance(e, TaskRequeued))
        assert "does not hold the lease" in requeued.reason
        assert len([e for e in events if isinstance(e, TaskSucceeded)]) == 1


async def test_a_long_task_outlives_the_grace_and_is_never_requeued(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    async with stack(tmp_path, workers=1, heartbeat=0.2) as h:
        task_id = (await h.api.submit([gate.task()])).ids[0]
        await h.wait_status(task_id, {"running"})
        recovery = h.agents["recovery"]

        async def swept_past_grace() -> bool:
            first = recovery.lease_seen.get((task_id, recovery.board.tasks[task_id].lease_seq))
            held = recovery.held.get("w1")
            return bool(first is not None and held and held[2] - first > recovery.unheld_grace)

        from tests.helpers import until

        await until(swept_past_grace, 20, "heartbeats past the grace period")
        gate.open()
        row = await h.wait_status(task_id, TERMINAL)
        assert row.status == "succeeded"
        assert not [e for _, e in await h.events(task_id) if isinstance(e, TaskRequeued)]
