"""Chaos on a real 3-node cluster (`dtf up --cluster 3`): kill the leading scheduler while
tasks flow. A bounded run is part of CI; the full size runs under ``-m chaos``. Each test
ends with `dtf audit verify` clean."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from dtf_core.events.task import (
    TaskCancelled,
    TaskFailed,
    TaskLeased,
    TaskSucceeded,
    TaskTimedOut,
)
from dtf_core.spec import TaskSpec
from tests.chaos.cluster import failover_phases, lead_events, pid_of, running, task_events
from tests.helpers import until

pytestmark = pytest.mark.anyio
TERMINAL_TYPES = {"succeeded", "failed", "timed_out", "cancelled"}
TERMINAL_EVENTS = (TaskSucceeded, TaskFailed, TaskTimedOut, TaskCancelled)


async def kill_leading_scheduler_while_tasks_flow(tmp_path: Path, n: int) -> None:
    with running(tmp_path / "dtf", workers=2, slots=2) as cluster:
        nc, api, log = await cluster.client()
        try:
            t0 = time.time()
            ids = (await api.submit([TaskSpec(type="noop")] * n)).ids

            async def flowing() -> bool:
                done = (await api.status()).tasks.get("succeeded", 0)
                return done >= n // 8

            await until(flowing, 60, "the first tasks to finish")
            status = await api.status()
            holder_before = status.leaders["scheduler"].holder
            os.kill(pid_of(holder_before), signal.SIGKILL)
            killed_at = time.time()
            left = n - status.tasks.get("succeeded", 0)
            assert left > n // 2, f"only {left} tasks were left at the kill; make the run longer"

            async def all_done() -> bool:
                counts = (await api.status()).tasks
                return sum(counts.get(k, 0) for k in TERMINAL_TYPES) >= n

            await until(all_done, 120, f"all {n} tasks to end")
            events = await task_events(log)
            claims = await lead_events(log, "scheduler")
            rows = {t.id: t.status for i in range(0, n, 500)
                    for t in await api.tasks(ids=ids[i:i + 500], limit=500)}
        finally:
            await nc.close()
        assert set(rows.values()) == {"succeeded"}, Counter(rows.values())
        terminal = Counter(e.task_id for _, e in events if isinstance(e, TERMINAL_EVENTS))
        assert set(terminal) == set(ids) and set(terminal.values()) == {1}, \
            "every task ends in exactly one terminal event"
        new_leases = [e for _, e in events if isinstance(e, TaskLeased)
                      and e.actor != holder_before and e.at >= killed_at]
        assert new_leases, "the new leader placed nothing"
        first_lease = min(e.at for e in new_leases)
        failover = first_lease - killed_at
        phases = failover_phases(claims, [e for _, e in events], holder_before, killed_at,
                                 first_lease)
        print(f"chaos: {n} tasks, {time.time() - t0:.1f}s, failover {failover:.2f}s: {phases}")
        assert failover <= 2.0, \
            f"a new leader placed its first task {failover:.2f}s after the kill ({phases})"
        cluster.audit_clean()


async def test_kill_the_leading_scheduler_while_tasks_flow(tmp_path: Path) -> None:
    """The bounded smoke of this fault in the default suite; -m chaos runs 2,000 tasks."""
    await kill_leading_scheduler_while_tasks_flow(tmp_path, 150)


@pytest.mark.chaos
async def test_kill_the_leading_scheduler_while_2000_tasks_flow(tmp_path: Path) -> None:
    await kill_leading_scheduler_while_tasks_flow(tmp_path, 2000)
