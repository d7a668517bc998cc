"""When the scheduler looks again, and which news wakes it (dtf_core/looks.py, ADR 0021):
given the log, when events are folded, then whether a round is woken and when the next
timed look comes."""

from __future__ import annotations

import pytest

from agents.control.scheduler import SchedulerAgent
from tests.unit.test_control_on_memory_log import T0, Memory, spec

pytestmark = pytest.mark.anyio
STEAL_AFTER = 5.0


def scheduler(mem: Memory) -> SchedulerAgent:
    sched = SchedulerAgent(None, mem.log, clock=mem.clock, folder=mem.api,  # shares the board
                           steal_after=STEAL_AFTER, waiting_after=None)
    sched._requeue_all()
    return sched


def look(mem: Memory, sched: SchedulerAgent) -> float | None:
    """What the scheduler's loop does before it waits: plan its next look, clear the wake."""
    sched.wake.clear()
    return sched.looks.plan(sched.ready_q, sched.board, sched.board.counts, mem.now)


async def idle_plane(slots: int) -> tuple[Memory, SchedulerAgent]:
    """One worker w1 with ``slots``, nothing submitted, the scheduler's loop waiting."""
    mem = Memory()
    await mem.register("w1", slots=slots)
    sched = scheduler(mem)
    look(mem, sched)
    return mem, sched


async def leased(mem: Memory, sched: SchedulerAgent) -> str:
    """A task submitted, placed by a round and its lease folded back."""
    [tid] = await mem.submit(spec())
    await mem.fold(mem.api)
    await sched.round()
    await mem.fold(mem.api)
    return tid


async def test_a_lease_ending_with_nothing_queued_wakes_no_round() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = scheduler(mem)
    assert look(mem, sched) is None  # nothing leased, nothing queued: only news
    [tid] = await mem.submit(spec())
    await mem.fold(mem.api)
    assert sched.wake.is_set()  # queued: a round places it
    look(mem, sched)
    assert await sched.round() is True
    await mem.fold(mem.api)
    assert sched.wake.is_set()  # the first lease: its steal is due before any look
    assert look(mem, sched) == STEAL_AFTER
    mem.now += 1.0
    await mem.report(await mem.task(tid), "started", "succeeded")
    assert not sched.wake.is_set()  # its end: a round would find nothing to do
    assert look(mem, sched) is None


async def test_a_later_lease_wakes_nothing_and_the_look_comes_when_the_oldest_is_due() -> None:
    mem, sched = await idle_plane(slots=2)
    await leased(mem, sched)
    assert look(mem, sched) == STEAL_AFTER  # at T0 + 5
    mem.now += 2.0
    [second] = await mem.submit(spec())
    await mem.fold(mem.api)
    assert sched.wake.is_set()  # queued
    assert look(mem, sched) == 3.0  # the first lease's steal is due at T0 + 5
    await sched.round()
    await mem.fold(mem.api)
    assert not sched.wake.is_set()  # the second lease is due after the look anyway
    assert (await mem.task(second)).status == "leased"
    assert sched.looks.at == T0 + STEAL_AFTER


async def test_a_stealable_lease_without_an_idle_slot_is_woken_by_any_news() -> None:
    mem, sched = await idle_plane(slots=1)
    tid = await leased(mem, sched)
    mem.now += STEAL_AFTER + 1
    look(mem, sched)
    assert await sched.round() is False  # stealable, but no idle slot anywhere
    assert look(mem, sched) == STEAL_AFTER  # look again later, or at news:
    assert sched.looks.overdue
    await mem.register("w2", slots=1)  # a slot: the round it wakes moves the lease there
    await mem.fold(mem.api)
    assert sched.wake.is_set()
    assert await sched.round() is True
    assert (await mem.task(tid)).worker_id == "w2"


async def test_the_look_for_a_lease_that_started_comes_early_and_finds_the_next() -> None:
    mem, sched = await idle_plane(slots=2)
    first = await leased(mem, sched)
    look(mem, sched)
    mem.now += 2.0
    await leased(mem, sched)
    await mem.report(await mem.task(first), "started")
    assert look(mem, sched) == 3.0  # the leases are not scanned again before T0 + 5
    mem.now += 3.0
    assert look(mem, sched) == 2.0  # at T0 + 5: the second lease's steal, at T0 + 7

