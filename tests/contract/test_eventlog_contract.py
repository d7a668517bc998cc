"""One contract for the event-log port, run against MemoryLog and a real JetStream stream.

Every test gets a fresh log: a new MemoryLog, or a new stream with its own subject prefix.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import nats
import pytest
from nats.js.api import StreamConfig

from agents.log import tail as tail_module
from agents.log.jetstream import JetStreamLog
from agents.log.memory import MemoryLog
from agents.log.port import MAX_BATCH, Append, AppendConflict, DuplicateBatch, Record
from agents.nats.connect import connect
from dtf_core.errors import InvalidInput

pytestmark = pytest.mark.anyio

WAIT = 5.0  # seconds any single wait on the log may take before the test fails


@dataclass
class Ctx:
    log: MemoryLog | JetStreamLog
    prefix: str

    def subject(self, task: str, etype: str = "submitted", *rest: str) -> str:
        return ".".join([self.prefix, "task", task, etype, *rest])

    def task(self, task: str) -> str:
        return f"{self.prefix}.task.{task}.>"

    def msg(self, task: str, etype: str = "submitted", *, expect: int | None = None,
            msg_id: str | None = None, worker: str | None = None) -> Append:
        rest = (worker,) if worker else ()
        return Append(
            subject=self.subject(task, etype, *rest),
            data=f"{task}/{etype}".encode(),
            msg_id=msg_id or uuid.uuid4().hex,
            expect_seq=expect,
            expect_filter=self.task(task) if expect is not None else None,
        )

    async def all(self) -> list[Record]:
        return await self.log.read([f"{self.prefix}.>"])


@pytest.fixture(params=["memory", "jetstream", "jetstream-covering", "jetstream-nats-py"])
async def ctx(request: pytest.FixtureRequest,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ctx]:
    if request.param == "memory":
        yield Ctx(MemoryLog(), "m" + uuid.uuid4().hex[:12])
        return
    if request.param == "jetstream-covering":
        # every tail counts as short in a costly stream: several filters become one
        # covering filter on the server, and the records it adds are dropped client-side
        monkeypatch.setattr(tail_module, "COSTLY_STREAM", 1)
        monkeypatch.setattr(tail_module, "SHORT_TAIL", 1)
    server = request.getfixturevalue("nats_server")
    unique = uuid.uuid4().hex[:12]
    # DTF's client (its own parser, raw deliveries), or nats-py's own, as a library user has
    nc = (await nats.connect(server.url) if request.param == "jetstream-nats-py"
          else await connect(server.url, "contract"))
    js = nc.jetstream()
    await js.add_stream(StreamConfig(
        name=f"C{unique}", subjects=[f"c{unique}.>"], allow_atomic=True, allow_direct=True,
        duplicate_window=120,
    ))
    try:
        yield Ctx(JetStreamLog(nc, stream=f"C{unique}"), f"c{unique}")
    finally:
        await js.delete_stream(f"C{unique}")
        await nc.close()


def seqs(records: Sequence[Record]) -> list[int]:
    return [r.seq for r in records]


# --- append -----------------------------------------------------------------------------------


async def test_append_returns_consecutive_sequences(ctx: Ctx) -> None:
    assert await ctx.log.append([ctx.msg("a")]) == [1]
    assert await ctx.log.append([ctx.msg("b"), ctx.msg("c"), ctx.msg("d")]) == [2, 3, 4]
    assert await ctx.log.append([ctx.msg("e")]) == [5]
    assert seqs(await ctx.all()) == [1, 2, 3, 4, 5]


async def test_an_empty_batch_writes_nothing(ctx: Ctx) -> None:
    assert await ctx.log.append([]) == []
    assert await ctx.log.last_seq() == 0


async def test_records_keep_subject_data_and_time(ctx: Ctx) -> None:
    before = time.time()
    await ctx.log.append([ctx.msg("a"), ctx.msg("a", "leased", worker="w1")])
    [first, second] = await ctx.all()
    assert (first.subject, first.data) == (ctx.subject("a"), b"a/submitted")
    assert (second.subject, second.data) == (ctx.subject("a", "leased", "w1"), b"a/leased")
    assert before - 5 < first.time < time.time() + 5


async def test_last_seq(ctx: Ctx) -> None:
    assert await ctx.log.last_seq() == 0
    await ctx.log.append([ctx.msg("a"), ctx.msg("b")])
    assert await ctx.log.last_seq() == 2


async def test_a_conflict_anywhere_in_a_batch_writes_nothing(ctx: Ctx) -> None:
    await ctx.log.append([ctx.msg("x")])
    batch = [ctx.msg("a"), ctx.msg("b"), ctx.msg("x", "leased", expect=0, worker="w1")]
    with pytest.raises(AppendConflict):
        await ctx.log.append(batch)
    assert seqs(await ctx.all()) == [1]
    assert await ctx.log.last_seq() == 1


async def test_expect_zero_on_an_empty_filter_succeeds_once(ctx: Ctx) -> None:
    assert await ctx.log.append([ctx.msg("a", expect=0)]) == [1]
    with pytest.raises(AppendConflict):
        await ctx.log.append([ctx.msg("a", expect=0)])
    assert seqs(await ctx.all()) == [1]


async def test_expect_without_filter_checks_the_subject_itself(ctx: Ctx) -> None:
    first = Append(ctx.subject("a"), b"1", uuid.uuid4().hex, expect_seq=0)
    assert await ctx.log.append([first]) == [1]
    other = Append(ctx.subject("a", "started"), b"2", uuid.uuid4().hex, expect_seq=0)
    assert await ctx.log.append([other]) == [2]
    with pytest.raises(AppendConflict):
        await ctx.log.append([Append(ctx.subject("a"), b"3", uuid.uuid4().hex, expect_seq=0)])


async def test_expect_with_a_wildcard_filter_covers_the_whole_task(ctx: Ctx) -> None:
    assert await ctx.log.append([ctx.msg("x", expect=0)]) == [1]
    assert await ctx.log.append([ctx.msg("y", expect=0)]) == [2]  # another task: no effect
    assert await ctx.log.append([ctx.msg("x", "leased", expect=1, worker="w1")]) == [3]
    with pytest.raises(AppendConflict):  # a second lease under the same expectation
        await ctx.log.append([ctx.msg("x", "leased", expect=1, worker="w2")])
    assert await ctx.log.append([ctx.msg("x", "started", expect=3)]) == [4]
    assert seqs(await ctx.log.read([ctx.task("x")])) == [1, 3, 4]


async def test_expectations_in_a_batch_see_the_log_before_the_batch(ctx: Ctx) -> None:
    with pytest.raises(AppendConflict):
        await ctx.log.append([ctx.msg("x", expect=0), ctx.msg("x", "leased", expect=1,
                                                                worker="w1")])
    assert await ctx.log.last_seq() == 0
    both = [ctx.msg("x", expect=0), ctx.msg("y", expect=0), ctx.msg("x", "started", expect=0)]
    assert await ctx.log.append(both) == [1, 2, 3]


async def test_of_concurrent_conditional_appends_exactly_one_wins(ctx: Ctx) -> None:
    await ctx.log.append([ctx.msg("x")])
    won: list[int] = []
    lost: list[AppendConflict] = []

    async def lease(worker: str) -> None:
        try:
            won.extend(await ctx.log.append([ctx.msg("x", "leased", expect=1, worker=worker)]))
        except AppendConflict as exc:
            lost.append(exc)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(lease, f"w{i}")
    assert (won, len(lost)) == ([2], 9)
    assert len(await ctx.log.read([ctx.subject("x", "leased", "*")])) == 1


# --- duplicates -------------------------------------------------------------------------------


async def test_a_duplicate_message_returns_the_original_sequence(ctx: Ctx) -> None:
    first = await ctx.log.append([ctx.msg("a", msg_id="m-a"), ctx.msg("b")])
    assert first.duplicates == frozenset()
    again = await ctx.log.append([ctx.msg("c", msg_id="m-a")])
    assert again == [1] and again.duplicates == {1}  # the log kept the first copy
    assert seqs(await ctx.all()) == [1, 2]
    assert await ctx.log.last_seq() == 2


async def test_a_resent_conditional_append_is_deduplicated_while_its_expectation_holds(
    ctx: Ctx,
) -> None:
    assert await ctx.log.append([ctx.msg("a", expect=0, msg_id="sub-a")]) == [1]
    # JetStream checks the expectation before the message id: the stale resend conflicts...
    with pytest.raises(AppendConflict):
        await ctx.log.append([ctx.msg("a", expect=0, msg_id="sub-a")])
    # ...and a resend whose expectation still holds is recognised as the duplicate.
    assert await ctx.log.append([ctx.msg("a", expect=1, msg_id="sub-a")]) == [1]
    assert seqs(await ctx.all()) == [1]


async def test_a_batch_repeating_a_stored_message_id_writes_nothing(ctx: Ctx) -> None:
    await ctx.log.append([ctx.msg("a", msg_id="m-a")])
    with pytest.raises(DuplicateBatch):
        await ctx.log.append([ctx.msg("b"), ctx.msg("c", msg_id="m-a"), ctx.msg("d")])
    assert seqs(await ctx.all()) == [1]


async def test_a_resent_batch_is_refused_whole(ctx: Ctx) -> None:
    batch = [ctx.msg("a"), ctx.msg("b")]
    assert await ctx.log.append(batch) == [1, 2]
    with pytest.raises(DuplicateBatch):
        await ctx.log.append(batch)
    assert await ctx.log.last_seq() == 2


async def test_a_batch_repeating_an_id_within_itself_writes_nothing(ctx: Ctx) -> None:
    with pytest.raises(DuplicateBatch):
        await ctx.log.append([ctx.msg("a", msg_id="same"), ctx.msg("b", msg_id="same")])
    assert await ctx.all() == []


# --- limits -----------------------------------------------------------------------------------


async def test_a_batch_over_the_limit_is_refused_whole(ctx: Ctx) -> None:
    with pytest.raises(InvalidInput):
        await ctx.log.append([ctx.msg(f"t{i}") for i in range(MAX_BATCH + 1)])
    assert await ctx.log.last_seq() == 0


async def test_a_batch_at_the_limit_is_appended(ctx: Ctx) -> None:
    with anyio.fail_after(WAIT):
        got = await ctx.log.append([ctx.msg(f"t{i}") for i in range(MAX_BATCH)])
    assert got == list(range(1, MAX_BATCH + 1))


# --- read -------------------------------------------------------------------------------------


async def fill(ctx: Ctx) -> None:
    await ctx.log.append([
        ctx.msg("x"),                          # 1
        ctx.msg("y"),                          # 2
        ctx.msg("x", "leased", worker="w1"),   # 3
        ctx.msg("y", "leased", worker="w2"),   # 4
        ctx.msg("x", "succeeded"),             # 5
    ])


async def test_read_filters_on_the_server_side(ctx: Ctx) -> None:
    await fill(ctx)
    assert seqs(await ctx.log.read([ctx.task("x")])) == [1, 3, 5]
    assert seqs(await ctx.log.read([ctx.task("y")])) == [2, 4]
    assert seqs(await ctx.log.read([ctx.subject("*", "leased", "w1")])) == [3]
    assert seqs(await ctx.log.read([ctx.subject("*", "leased", "*")])) == [3, 4]
    assert seqs(await ctx.log.read([ctx.subject("*", "submitted")])) == [1, 2]


async def test_read_with_several_filters_is_in_sequence_order(ctx: Ctx) -> None:
    await fill(ctx)
    got = await ctx.log.read([ctx.subject("*", "succeeded"), ctx.subject("y", "leased", "w2"),
                              ctx.subject("x", "submitted")])
    assert seqs(got) == [1, 4, 5]


async def test_read_ends_when_the_last_records_match_no_filter(ctx: Ctx) -> None:
    await fill(ctx)
    with anyio.fail_after(WAIT):
        got = await ctx.log.read([ctx.subject("x", "submitted"), ctx.subject("y", "submitted")])
    assert seqs(got) == [1, 2]


async def test_a_covering_tail_says_when_dropped_records_bring_it_to_the_end(
        ctx: Ctx, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["ctx"] != "jetstream-covering":
        pytest.skip("only a covering filter drops records")
    await fill(ctx)
    async with ctx.log.tail([ctx.subject("x", "submitted"), ctx.subject("y", "submitted")]) \
            as tail:
        batches = tail.__aiter__()
        got: list[Record] = []
        try:
            with anyio.fail_after(WAIT):
                while tail.pending != 0:
                    got.extend(await batches.__anext__())
                await ctx.log.append([ctx.msg("z", "succeeded")])  # dropped: no filter
                assert await batches.__anext__() == []
        finally:
            await batches.aclose()
    assert seqs(got) == [1, 2]
    assert tail.pending == 0


async def test_read_from_a_start_sequence(ctx: Ctx) -> None:
    await fill(ctx)
    assert seqs(await ctx.log.read([ctx.task("x")], start_seq=2)) == [3, 5]
    assert seqs(await ctx.log.read([ctx.task("x")], start_seq=5)) == [5]
    assert await ctx.log.read([ctx.task("x")], start_seq=6) == []
    assert seqs(await ctx.log.read([ctx.task("x")], start_seq=0)) == [1, 3, 5]


async def test_read_of_an_empty_filter_is_empty(ctx: Ctx) -> None:
    assert await ctx.log.read([ctx.task("x")]) == []
    await fill(ctx)
    with anyio.fail_after(WAIT):
        assert await ctx.log.read([ctx.task("nobody")]) == []
        assert await ctx.log.read([ctx.subject("x", "leased", "w2")]) == []


# --- tail -------------------------------------------------------------------------------------


async def test_tail_delivers_existing_then_new_records(ctx: Ctx) -> None:
    await fill(ctx)
    got: list[Record] = []
    async with ctx.log.tail([ctx.task("x")]) as tail:
        batches = tail.__aiter__()
        try:
            with anyio.fail_after(WAIT):
                while len(got) < 3:
                    got.extend(await batches.__anext__())
                assert seqs(got) == [1, 3, 5]
                await ctx.log.append([ctx.msg("y", "succeeded"), ctx.msg("x", "requeued")])
                while len(got) < 4:
                    got.extend(await batches.__anext__())
        finally:
            await batches.aclose()
    assert seqs(got) == [1, 3, 5, 7]
    assert got[-1].subject == ctx.subject("x", "requeued")


async def test_tail_from_a_start_sequence_with_several_filters(ctx: Ctx) -> None:
    await fill(ctx)
    got: list[Record] = []
    async with ctx.log.tail([ctx.subject("*", "leased", "*"), ctx.subject("*", "succeeded")],
                            start_seq=4) as tail:
        batches = tail.__aiter__()
        try:
            with anyio.fail_after(WAIT):
                while len(got) < 2:
                    got.extend(await batches.__anext__())
                await ctx.log.append([ctx.msg("z"), ctx.msg("z", "leased", worker="w3")])
                while len(got) < 3:
                    got.extend(await batches.__anext__())
        finally:
            await batches.aclose()
    assert seqs(got) == [4, 5, 7]


async def test_tail_of_an_empty_filter_waits_for_the_first_record(ctx: Ctx) -> None:
    await fill(ctx)
    async with ctx.log.tail([ctx.task("late")]) as tail:
        with anyio.fail_after(WAIT):
            assert await tail.empty()
        batches = tail.__aiter__()
        try:
            await ctx.log.append([ctx.msg("late")])
            with anyio.fail_after(WAIT):
                batch = await batches.__anext__()
        finally:
            await batches.aclose()
    assert seqs(batch) == [6]


async def test_tail_is_not_empty_when_records_match(ctx: Ctx) -> None:
    await fill(ctx)
    async with ctx.log.tail([ctx.task("y")]) as tail:
        with anyio.fail_after(WAIT):
            assert not await tail.empty()
