"""The autoscaler on a real stack: from no worker, a burst of tasks makes it start local
`dtf worker` processes up to its maximum; every task runs once (one lease, attempt 1, no
requeue, no lost worker); when the queue is empty it waits out its cooldown, drains the idle
workers and stops them, back to its minimum. Every step is an event with its reason."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agents.control.autoscaler import AutoscalerAgent
from agents.control.scaling import members
from agents.host.scale_local import LocalProvider
from agents.log.jetstream import JetStreamLog
from agents.wire.client import ApiClient
from dtf_core.autoscale import Limits
from dtf_core.events.scale import ScaleDone, ScaleRequested
from dtf_core.events.task import AttemptOutcome, TaskLeased, TaskRequeued, TaskSucceeded
from dtf_core.events.tests import TestsReported
from dtf_core.events.worker import WorkerLost, WorkerStopped
from dtf_core.spec import command_spec
from projections.board import Board
from tests.helpers import until
from tests.integration.harness import stack

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[2]
TASKS = 12
COOLDOWN_S = 3.0


async def no_token(worker_id: str) -> str | None:
    del worker_id
    return None  # the harness's stack runs without authentication


async def test_local_workers_scale_up_and_down_without_losing_a_lease(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DTF_DATA_DIR": str(tmp_path / "data"),
           "DTF_CACHE_DIR": str(tmp_path / "cache"), "DTF_HEARTBEAT_INTERVAL": "1.0",
           "DTF_DETECT_BROWSER": "0"}
    async with stack(tmp_path, workers=0, control=True, heartbeat=1.0, misses=5) as h:
        provider = LocalProvider(server=h.url, group="local", data_dir=tmp_path / "data",
                                 issue_token=no_token, slots=1, env=env, cwd=tmp_path)
        nc = await h.conn("autoscaler")
        limits = Limits(min_workers=0, max_workers=4, cooldown_s=COOLDOWN_S,
                        up_cooldown_s=1.0, target_s=2.0)
        agent = AutoscalerAgent(nc, JetStreamLog(nc), provider, group="local", limits=limits,
                                slots=1, api=ApiClient(nc), interval=0.2)
        try:
            await h.start("autoscaler", agent, agent.ready)
            res = await h.api.submit([command_spec(["sleep", "0.5"]) for _ in range(TASKS)])

            async def all_done() -> bool:
                rows = await h.api.tasks(ids=res.ids)
                return all(r.status == "succeeded" for r in rows)

            await until(all_done, 45, "the burst to finish on the autoscaled workers")

            async def back_to_min() -> bool:
                done = [e for _, e in await h.events() if isinstance(e, ScaleDone)]
                downs = [e for _, e in await h.events()
                         if isinstance(e, ScaleRequested) and e.direction == "down"]
                finished = {d.decision for d in done}
                return (bool(downs) and all(d.decision in finished for d in downs)
                        and not members(agent.board, "local") and not provider.running())

            await until(back_to_min, 30, "the idle workers to be drained and stopped")
        finally:
            await h.stop("autoscaler")  # stops whatever it still runs
        assert provider.running() == []

        replay = Board()
        for seq, ev in await h.events():
            if not isinstance(ev, TestsReported):
                replay.apply(seq, ev)
        live = h.agents["api"].board
        assert replay.state_hash() == live.state_hash()  # invariant 7: the fold is the log's
        events = [e for _, e in await h.events()]
        leases = [e for e in events if isinstance(e, TaskLeased)]
        # every task exactly once: one lease, attempt 1, one success, nothing requeued or lost
        assert sorted(e.task_id for e in leases) == sorted(res.ids)
        assert {e.attempt for e in leases} == {1}
        assert sorted(e.task_id for e in events if isinstance(e, TaskSucceeded)) == \
            sorted(res.ids)
        assert [e for e in events if isinstance(e, TaskRequeued | WorkerLost)] == []
        assert all(isinstance(e, TaskSucceeded) for e in events
                   if isinstance(e, AttemptOutcome))
        ran_on = {e.worker_id for e in leases}
        assert len(ran_on) >= 2 and all(w.startswith("local-auto-") for w in ran_on), ran_on

        requested = [e for e in events if isinstance(e, ScaleRequested)]
        done = {e.decision: e for e in events if isinstance(e, ScaleDone)}
        ups = [e for e in requested if e.direction == "up"]
        downs = [e for e in requested if e.direction == "down"]
        assert max(e.target for e in ups) == 4, [(e.target, e.reason) for e in ups]
        assert all(e.reason and e.decision in done and done[e.decision].ok for e in requested)
        assert downs[-1].target == 0
        stopped = {e.worker_id for e in events if isinstance(e, WorkerStopped)}
        drained = {w for e in downs for w in done[e.decision].workers}
        started = {w for e in ups for w in done[e.decision].workers}
        assert drained == started and stopped >= started
        # the cooldown: no scale-down sooner than COOLDOWN_S after the last change
        first_down = downs[0]
        last_before = max(e.at for e in requested if e.at < first_down.at)
        assert first_down.at - last_before >= COOLDOWN_S


async def test_a_restarted_autoscaler_stops_the_workers_an_earlier_one_started(
        tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DTF_DATA_DIR": str(tmp_path / "data"),
           "DTF_CACHE_DIR": str(tmp_path / "cache"), "DTF_DETECT_BROWSER": "0"}
    async with stack(tmp_path, workers=0, control=True, heartbeat=1.0, misses=5) as h:
        def provider() -> LocalProvider:
            return LocalProvider(server=h.url, group="local", data_dir=tmp_path / "data",
                                 issue_token=no_token, slots=1, env=env, cwd=tmp_path)

        earlier, later = provider(), provider()
        try:
            await earlier.start(["local-auto-1"])

            async def beating() -> bool:  # registered, and its heart beats: it is running
                return any(w.id == "local-auto-1" and w.load is not None
                           for w in await h.api.workers(heartbeats=True))

            await until(beating, 30, "the first autoscaler's worker to run")
            await later.stop(["local-auto-1"])  # it never started it: found by its argv
            # ended (its exit status is the parent's to read: here both are this process)
            await asyncio.wait_for(earlier.procs["local-auto-1"].wait(), 5)
            stops = [e for _, e in await h.events() if isinstance(e, WorkerStopped)]
            assert [e.worker_id for e in stops] == ["local-auto-1"]  # a clean stop
        finally:
            await earlier.close()
