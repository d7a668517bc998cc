"""The projector's paced writes: a reader never waits out the pause, and never gets a
stale answer silently."""

from __future__ import annotations

import asyncio

import pytest

from agents.control.pacing import SMALL, Pacer
from dtf_core.errors import Unavailable

pytestmark = pytest.mark.anyio


class Store:
    def __init__(self) -> None:
        self.seq = 0


async def test_the_pause_runs_its_course_without_a_reader() -> None:
    pacer = Pacer(lambda: 0, every_s=60.0)
    with pytest.raises(TimeoutError):  # still pausing: no reader waits
        await asyncio.wait_for(pacer.pause(since_s=0.0, events=1), 0.05)
    await asyncio.wait_for(pacer.pause(since_s=61.0, events=1), 5)  # took the whole period


async def test_a_costly_small_batch_pauses_longer_than_the_period() -> None:
    # 0.5 s of work at a share of 5 %: a period of 10 s, not 0.01 s
    pacer = Pacer(lambda: 0, every_s=0.01, share=0.05, most_s=60.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pacer.pause(since_s=0.5, events=10), 0.2)
    await asyncio.wait_for(pacer.pause(since_s=0.0001, events=10), 5)  # a cheap one


async def test_a_large_batch_keeps_the_period() -> None:
    # its cost is its rows: pausing longer saves nothing, and leaves more to read later
    pacer = Pacer(lambda: 0, every_s=0.01, share=0.05, most_s=60.0)
    await asyncio.wait_for(pacer.pause(since_s=0.5, events=SMALL), 5)


async def test_the_longest_period_caps_the_pause() -> None:
    pacer = Pacer(lambda: 0, every_s=0.01, share=0.05, most_s=10.1)
    await asyncio.wait_for(pacer.pause(since_s=10.0, events=1), 5)  # 200 s by its share: 0.1 s left


async def test_a_reader_cuts_a_long_pause_short() -> None:
    store = Store()
    pacer = Pacer(lambda: store.seq, every_s=0.01, share=0.001, most_s=60.0)

    async def projector() -> None:
        await pacer.pause(since_s=1.0, events=1)  # a minute, by its share
        store.seq = 3
        pacer.wrote()

    writer = asyncio.create_task(projector())
    await asyncio.wait_for(pacer.fresh(3, caught_up=True), 5)
    await writer


@pytest.mark.parametrize("writes", [(7,), (3, 5, 9)])
async def test_a_reader_cuts_the_pauses_short_until_every_write_it_needs(
    writes: tuple[int, ...],
) -> None:
    store = Store()
    pacer = Pacer(lambda: store.seq, every_s=60.0)

    async def projector() -> None:
        for seq in writes:
            await pacer.pause(since_s=0.0, events=1)  # would pause a minute
            store.seq = seq
            pacer.wrote()

    writer = asyncio.create_task(projector())
    await asyncio.wait_for(pacer.fresh(writes[-1], caught_up=True), 5)
    assert store.seq == writes[-1]
    await writer


async def test_stored_already_answers_at_once_even_while_catching_up() -> None:
    pacer = Pacer(lambda: 10, every_s=60.0)
    await asyncio.wait_for(pacer.fresh(10, caught_up=False), 1)


async def test_catching_up_is_said_not_answered_stale() -> None:
    pacer = Pacer(lambda: 4, every_s=60.0)
    with pytest.raises(Unavailable, match="catching up with the log \\(at seq 4 of 10\\)"):
        await pacer.fresh(10, caught_up=False)


async def test_no_write_in_time_is_said_not_answered_stale() -> None:
    pacer = Pacer(lambda: 4, every_s=60.0)
    with pytest.raises(Unavailable, match="at seq 4, behind the log's 10"):
        await pacer.fresh(10, caught_up=True, timeout=0.05)
