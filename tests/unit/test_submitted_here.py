"""A control plane's api hands its scheduler what it has just submitted (ADR 0012): the
scheduler's round leases it from the shared board at once, before the log delivers the
submission back to the fold."""

from __future__ import annotations

import pytest

from agents.control.scheduler import SchedulerAgent
from tests.unit.test_control_on_memory_log import Memory, spec

pytestmark = pytest.mark.anyio


async def test_a_submission_of_this_process_is_leased_without_waiting_for_the_fold() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = SchedulerAgent(None, mem.log, clock=mem.clock, folder=mem.api)  # shares the board
    sched._requeue_all()
    [tid] = await mem.submit(spec())  # appended and applied to the shared board; not folded
    position = mem.api.position
    assert await sched.round() is False  # nothing queued for it yet: the fold has not run
    sched.submitted_here([tid])
    assert sched.wake.is_set()
    assert await sched.round() is True
    t = mem.api.board.tasks[tid]
    assert (t.status, t.worker_id) == ("leased", "w1")
    assert mem.api.position == position  # leased before the fold delivered the submission


async def test_a_standby_does_not_lease_what_it_is_handed() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = SchedulerAgent(None, mem.log, clock=mem.clock, folder=mem.api, lead=True)
    [tid] = await mem.submit(spec())
    sched.submitted_here([tid])
    assert await sched.round() is False
    assert mem.api.board.tasks[tid].status == "queued"
