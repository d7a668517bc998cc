"""Leases chained right behind their submission (ADR 0016) on a real nats-server: the
control plane's api sends a one-task submission and its lease without waiting between
them; JetStream stores the lease only right behind the submission. Whatever the timing,
every task is leased once and the log keeps every invariant."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dtf_core.audit import Verifier
from dtf_core.events.task import TaskLeased, TaskSubmitted
from dtf_core.spec import TaskSpec
from tests.integration.harness import Harness, stack

pytestmark = pytest.mark.anyio


async def leases_of(h: Harness, task_id: str) -> tuple[int, list[int]]:
    events = await h.events(task_id)
    [submitted] = [seq for seq, e in events if isinstance(e, TaskSubmitted)]
    return submitted, [seq for seq, e in events if isinstance(e, TaskLeased)]


async def clean(h: Harness) -> None:
    verifier = Verifier()
    for seq, event in await h.events():
        verifier.feed(seq, event)
    assert verifier.result().violations == []


async def test_a_single_submission_is_leased_right_behind_it(tmp_path: Path) -> None:
    async with stack(tmp_path, control=True, slots=2) as h:
        scheduler = h.agents["scheduler"]
        for _ in range(5):  # one at a time, as `dtf submit` and a small CI job do
            [task_id] = (await h.api.submit([TaskSpec(type="noop")])).ids
            await h.wait_status(task_id, {"succeeded"})
            submitted, leases = await leases_of(h, task_id)
            assert len(leases) == 1
        assert scheduler.leases_chained >= 1  # an idle plane chains (another event between
        # a submission and its lease sends that one through a round instead)
        chained_seen = 0
        for _, e in await h.events():
            if isinstance(e, TaskSubmitted):
                submitted, leases = await leases_of(h, e.task_id)
                chained_seen += leases == [submitted + 1]
        assert chained_seen >= scheduler.leases_chained
        await clean(h)


async def test_concurrent_submissions_and_rounds_lease_each_task_once(tmp_path: Path) -> None:
    async with stack(tmp_path, control=True, slots=50) as h:
        scheduler = h.agents["scheduler"]
        ids: list[str] = []

        async def client(n: int) -> None:  # waits for each submission, not its task, so
            for _ in range(n):  # chained leases, a batch's rounds and reports interleave
                ids.extend((await h.api.submit([TaskSpec(type="noop")])).ids)

        _, batch = await asyncio.gather(client(60), h.api.submit([TaskSpec(type="noop")] * 20))
        assert batch is not None
        ids.extend(batch.ids)
        for task_id in ids:
            await h.wait_status(task_id, {"succeeded"})
        for task_id in ids:
            _, leases = await leases_of(h, task_id)
            assert len(leases) == 1, task_id
        assert scheduler.leases_made == len(ids)
        assert 0 < scheduler.leases_chained <= 60  # the batch of 20 goes through rounds
        await clean(h)
