"""Chaos on a real 3-node cluster: a worker frozen past its heartbeat deadline comes back
with a late result; a NATS node dies under load. Each ends with `dtf audit verify` clean."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from dtf_core.events.task import ResultRefused, TaskLeased, TaskSucceeded
from dtf_core.spec import TaskSpec
from tests.chaos.cluster import running, stopped, task_events
from tests.gates import Gate
from tests.helpers import until

pytestmark = pytest.mark.anyio


async def test_a_frozen_worker_comes_back_and_its_late_result_is_refused(
        tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    with running(tmp_path / "dtf", workers=2, slots=1) as cluster:
        nc, api, log = await cluster.client()
        try:
            task_id = (await api.submit([gate.task()])).ids[0]

            async def running_on() -> bool:
                row = (await api.tasks(ids=[task_id]))[0]
                return row.status == "running"

            await until(running_on, 30, "the task to start")
            first = (await api.tasks(ids=[task_id]))[0].worker_id
            (victim,) = cluster.agents(first)
            with stopped(victim):  # past its heartbeat deadline: declared lost, requeued

                async def moved() -> bool:
                    row = (await api.tasks(ids=[task_id]))[0]
                    return row.status == "running" and row.worker_id != first

                await until(moved, 30, "the task to run on the other worker")
                gate.open()  # both attempts' processes may now finish

                async def succeeded() -> bool:
                    return (await api.tasks(ids=[task_id]))[0].status == "succeeded"

                await until(succeeded, 30, "the second attempt to succeed")
            # SIGCONT: the frozen worker reports its attempt's success, under a dead lease

            # Its "started" may be refused first: a report batch it resends on waking.
            async def refused() -> bool:
                return any(isinstance(e, ResultRefused) and e.task_id == task_id
                           and e.outcome == "succeeded" for _, e in await task_events(log))

            await until(refused, 30, "the late result to be refused")
            events = [e for _, e in await task_events(log) if e.task_id == task_id]
        finally:
            await nc.close()
        wins = [e for e in events if isinstance(e, TaskSucceeded)]
        assert len(wins) == 1 and wins[0].worker_id != first
        late = [e for e in events if isinstance(e, ResultRefused)]
        assert {e.worker_id for e in late} == {first}, late
        assert [e.outcome for e in late if e.outcome != "started"] == ["succeeded"], late
        assert next(e.worker_id for e in events if isinstance(e, TaskLeased)) == first
        cluster.audit_clean()


async def test_kill_a_nats_node_under_load_loses_no_acknowledged_event(
        tmp_path: Path) -> None:
    with running(tmp_path / "dtf", workers=2, slots=2) as cluster:
        nc, api, log = await cluster.client()
        try:
            ids = (await api.submit([TaskSpec(type="noop")] * 150)).ids

            async def flowing() -> bool:
                return (await api.status()).tasks.get("succeeded", 0) >= 30

            await until(flowing, 60, "tasks to flow")
            info = await nc.jetstream().stream_info("DTF_EVENTS")
            leader = info.cluster.leader if info.cluster else "dtf-1"
            cluster.node(int(str(leader).rsplit("-", 1)[1]) - 1).kill()
            # acknowledged submissions after the kill: the client reconnects to a live node
            more = (await api.submit([TaskSpec(type="noop")] * 150)).ids
            ids += more
            # read-your-writes across the api replicas, one of them still catching up
            for _ in range(5):
                assert {r.id for r in await api.tasks(ids=more, limit=150)} == set(more)

            async def all_done() -> bool:
                return (await api.status()).tasks.get("succeeded", 0) >= len(ids)

            await until(all_done, 120, "every acknowledged task to finish")
            events = await task_events(log)
        finally:
            await nc.close()
        done = {e.task_id for _, e in events if isinstance(e, TaskSucceeded)}
        assert done == set(ids)
        cluster.audit_clean()


@pytest.mark.chaos
async def test_sigkill_a_worker_holding_leases_its_tasks_finish_once_elsewhere(
        tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    with running(tmp_path / "dtf", workers=2, slots=2) as cluster:
        nc, api, log = await cluster.client()
        try:
            ids = (await api.submit([gate.task()] * 4)).ids

            async def all_running() -> bool:
                return all(r.status == "running" for r in await api.tasks(ids=ids))

            await until(all_running, 30, "all four tasks to run")
            (victim,) = cluster.agents("local-1")
            attempts = victim.children(recursive=True)
            assert attempts, "the victim runs its two tasks"
            victim.kill()  # the supervisor starts it again, as a new session
            _, alive = psutil.wait_procs(attempts, timeout=10)
            assert not alive, f"the dead worker's attempts still run: {alive}"
            gate.open()

            async def all_done() -> bool:
                return all(r.status == "succeeded" for r in await api.tasks(ids=ids))

            await until(all_done, 60, "every task to finish")
            events = await task_events(log)
        finally:
            await nc.close()
        wins = [e for _, e in events if isinstance(e, TaskSucceeded)]
        assert sorted(e.task_id for e in wins) == sorted(ids)
        moved = {e.task_id for _, e in events
                 if isinstance(e, TaskLeased) and e.worker_id == "local-1"}
        assert moved and all(e.attempt > 1 for e in wins if e.task_id in moved)
        cluster.audit_clean()
