"""Leases that are also their task's submission (ADR 0018) on a real nats-server: the
control plane's api writes a one-task submission that a round would lease at once as
one message. Whatever the timing, every task is leased once, a worker runs it under
that message's sequence, and the log keeps every invariant."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dtf_core.audit import Verifier
from dtf_core.events.task import TaskLeased, TaskSubmitted, TaskSucceeded
from dtf_core.spec import TaskSpec
from tests.integration.harness import Harness, stack

pytestmark = pytest.mark.anyio


async def leases_of(h: Harness, task_id: str) -> tuple[int, list[int]]:
    """The task's first event's sequence, and its leases'."""
    events = await h.events(task_id)
    [submitted] = [seq for seq, e in events if isinstance(e, TaskSubmitted)
                   or (isinstance(e, TaskLeased) and e.submitted_by)]
    return submitted, [seq for seq, e in events if isinstance(e, TaskLeased)]


async def clean(h: Harness) -> None:
    verifier = Verifier()
    for seq, event in await h.events():
        verifier.feed(seq, event)
    assert verifier.result().violations == []


async def test_a_single_submission_is_written_as_its_lease(tmp_path: Path) -> None:
    async with stack(tmp_path, control=True, slots=2) as h:
        scheduler = h.agents["scheduler"]
        for _ in range(5):  # one at a time, as `dtf submit` and a small CI job do
            [task_id] = (await h.api.submit([TaskSpec(type="noop")])).ids
            await h.wait_status(task_id, {"succeeded"})
            submitted, leases = await leases_of(h, task_id)
            assert len(leases) == 1
            [(_, done)] = [(s, e) for s, e in await h.events(task_id)
                           if isinstance(e, TaskSucceeded)]
            assert done.fencing == leases[0]  # the worker ran it under that message
        assert scheduler.leases_with_submission >= 1  # an idle plane writes them (one
        # waiting for a round sends the submission through the round instead)
        together = 0
        for seq, e in await h.events():
            if isinstance(e, TaskLeased) and e.submitted_by:
                submitted, leases = await leases_of(h, e.task_id)
                together += leases == [submitted] == [seq]
        assert together == scheduler.leases_with_submission
        await clean(h)


async def test_concurrent_submissions_and_rounds_lease_each_task_once(tmp_path: Path) -> None:
    async with stack(tmp_path, control=True, slots=50) as h:
        scheduler = h.agents["scheduler"]
        ids: list[str] = []

        async def client(n: int) -> None:  # waits for each submission, not its task, so
            for _ in range(n):  # leases with submissions, rounds and reports interleave
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
        assert 0 < scheduler.leases_with_submission <= len(ids)
        await clean(h)
