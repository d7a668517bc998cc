"""Chaos on a real 3-node cluster: the projector dies right after a DuckDB commit; the whole
stack is killed mid-run and started again. Each ends with `dtf audit verify` clean (which
rebuilds the projection from the log and compares it with the live one)."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import psutil
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from dtf_core.events.task import TaskSucceeded
from dtf_core.spec import TaskSpec
from tests.chaos.cluster import running, start, task_events
from tests.gates import Gate
from tests.helpers import until

pytestmark = pytest.mark.anyio


async def test_projector_killed_between_commit_and_position_loses_and_doubles_nothing(
        tmp_path: Path) -> None:
    data = tmp_path / "dtf"
    with running(data, workers=2, slots=4,
                 extra_env={"DTF_FAULTS": "projector.after_commit@3"}) as cluster:
        nc, api, _ = await cluster.client()
        fired = data / "faults" / "projector.after_commit"
        ids: list[str] = []
        try:
            async def projector_status() -> bool:
                try:  # the projector that got the request may be the one the fault kills
                    reply = await nc.request("dtf.q.projector", b'{"op":"status"}', timeout=2)
                except (NatsTimeout, NoRespondersError):
                    return False
                counts = json.loads(reply.data).get("counts", {})
                return (counts.get("tasks") == len(ids) and counts.get("attempts") == len(ids)
                        and (await api.status()).tasks.get("succeeded", 0) == len(ids))

            # In rounds, each projected before the next is submitted: each round needs a
            # commit of its own, so the third commit comes by the third round however the
            # projector batches (one round of 200 tasks may be projected in two commits).
            for _ in range(6):
                ids += (await api.submit([TaskSpec(type="noop")] * 50)).ids
                await until(projector_status, 90, "the projection to hold every task once")
                if fired.exists():
                    break
        finally:
            await nc.close()
        assert fired.exists(), "the fault never fired"
        cluster.audit_clean()


async def test_the_whole_stack_killed_mid_run_resumes_queue_and_leases(tmp_path: Path) -> None:
    data, gate = tmp_path / "dtf", Gate(tmp_path / "gate")
    cluster = start(data, workers=2, slots=2)
    try:
        nc, api, _ = await cluster.client()
        try:
            blocked = (await api.submit([gate.task()] * 4)).ids
            queued = (await api.submit([TaskSpec(type="noop")] * 50)).ids

            async def leased() -> bool:
                rows = await api.tasks(ids=blocked)
                return all(r.status == "running" for r in rows)

            await until(leased, 30, "the blocking tasks to run")
        finally:
            await nc.close()
        everything = [psutil.Process(cluster.proc.pid), *cluster.children()]
        for p in everything:  # a power cut: every process at once, no clean stop
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        cluster.proc.wait()
        for p in everything:
            with contextlib.suppress(psutil.Error):
                p.wait(10)
    finally:
        cluster.stop()
    gate.open()
    with running(data, workers=2, slots=2, base=cluster.base) as again:
        nc, api, log = await again.client()
        try:
            async def all_done() -> bool:
                rows = await api.tasks(ids=blocked + queued, limit=100)
                return all(r.status == "succeeded" for r in rows)

            await until(all_done, 90, "every task to finish after the restart")
            events = await task_events(log)
        finally:
            await nc.close()
        wins = [e.task_id for _, e in events if isinstance(e, TaskSucceeded)]
        assert sorted(wins) == sorted(blocked + queued), "each task succeeded exactly once"
        again.audit_clean()
