"""A lease chained right behind its submission (ADR 0016): the control plane's api appends
a one-task submission and, without waiting for its acknowledgement, the lease a round
would write at once, guarded by the log's newest message id. Given the log, when the api
commits, then the events.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agents.control import plans
from agents.control.chain import commit_with_lease
from agents.control.scheduler import SchedulerAgent
from agents.log.commit import Change
from agents.log.memory import MemoryLog
from agents.log.port import Append, Appended
from dtf_core import commands as cmds
from dtf_core.audit import Verifier
from dtf_core.events.codec import decode
from dtf_core.events.task import TaskLeased, TaskSubmitted
from dtf_core.policy import DefaultPolicy
from dtf_core.scheduling import lease_new
from dtf_core.spec import TaskSpec
from tests.unit.test_control_on_memory_log import T0, Memory, spec

pytestmark = pytest.mark.anyio


def scheduler(mem: Memory, **kw: object) -> SchedulerAgent:
    sched = SchedulerAgent(None, mem.log, clock=mem.clock, folder=mem.api, **kw)  # type: ignore[arg-type]
    sched._requeue_all()
    return sched


def submission(mem: Memory, *specs: TaskSpec, actor: str = "alice") -> list[Change]:
    return plans.plan_submit(mem.api.board, cmds.SubmitTasks(tasks=list(specs), actor=actor),
                             now=mem.now, new_id=lambda: f"id{next(mem.ids)}").changes


async def types_in_log(mem: Memory) -> list[tuple[int, str]]:
    return [(r.seq, type(decode(r.subject, r.data)).__name__)
            for r in await mem.log.read(["dtf.evt.task.>"])]


def clean(log: MemoryLog) -> bool:
    verifier = Verifier()
    for r in log.records:
        if r.subject.startswith("dtf.evt.task."):
            verifier.feed(r.seq, decode(r.subject, r.data))
    return not verifier.result().violations


async def test_a_one_task_submission_is_leased_right_behind_it() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = scheduler(mem)
    results = await commit_with_lease(sched, submission(mem, spec()))
    assert results is not None and results[0] is not None
    [(s_seq, s), (l_seq, lease)] = await types_in_log(mem)
    assert (s, lease, l_seq) == ("TaskSubmitted", "TaskLeased", s_seq + 1)
    [task] = mem.api.board.tasks.values()
    assert (task.status, task.worker_id, task.lease_seq) == ("leased", "w1", l_seq)
    assert sched.leases_chained == sched.leases_made == 1
    assert clean(mem.log)


@pytest.mark.parametrize("why", ["queue not empty", "no free slot", "several tasks",
                                 "a dependency", "deadline passed",
                                 "owner at quota", "standby"])
async def test_no_lease_is_chained_where_a_round_would_not_lease_at_once(why: str) -> None:
    mem = Memory()
    await mem.register("w1", slots=1)
    sched = scheduler(mem, lead=why == "standby", quotas={"alice": 0} if why == "owner at quota"
                      else None)
    specs: Sequence[TaskSpec] = [spec()]
    if why == "queue not empty":
        await mem.submit(spec(gpus=1))  # waits for a GPU worker: the round's turn first
        await mem.fold(mem.api)
    elif why == "no free slot":
        await mem.submit(spec())
        await mem.fold(mem.api)
        assert await sched.round()
    elif why == "several tasks":
        specs = [spec(), spec()]
    elif why == "a dependency":
        [dep] = await mem.submit(spec(gpus=1))
        sched._requeue_all()
        sched.ready_q.pop()  # the queue empty, the dependency still unfinished
        specs = [spec(deps=[dep])]
    elif why == "deadline passed":
        specs = [TaskSpec(type="noop", deadline=T0 - 1)]
    before = len(mem.log.records)
    assert await commit_with_lease(sched, submission(mem, *specs)) is None
    assert len(mem.log.records) == before  # nothing appended: the api commits as usual
    assert sched.leases_chained == 0


async def test_the_lease_is_the_rounds_and_keeps_quotas() -> None:
    mem = Memory()
    await mem.register("w1")
    [change] = submission(mem, spec())
    [ev] = change.events
    assert isinstance(ev, TaskSubmitted)
    board = mem.api.board
    lease = lease_new(ev, board, now=T0, actor="s", quotas={}, policy=DefaultPolicy())
    assert isinstance(lease, TaskLeased) and lease.attempt == 1
    assert lease_new(ev, board, now=T0, actor="s", quotas={"alice": 0},
                     policy=DefaultPolicy()) is None


class Interloper(MemoryLog):
    """Another writer's event lands between the submission and its chained lease."""

    async def append_pipelined(self, batches: Sequence[Sequence[Append]]
                               ) -> list[Appended | BaseException]:
        first, *rest = batches
        out = await super().append_pipelined([first])
        await self.append([Append(subject="dtf.evt.run.r1.created", data=b"{}",
                                  msg_id="someone-else")])
        return out + await super().append_pipelined(rest)


async def test_a_lease_with_another_event_before_it_is_refused_and_the_round_leases() -> None:
    mem = Memory()
    mem.log = Interloper()
    mem.api.log = mem.log
    await mem.register("w1")
    sched = scheduler(mem)
    results = await commit_with_lease(sched, submission(mem, spec()))
    assert results is not None and results[0] is not None  # the submission stands
    assert [t for _, t in await types_in_log(mem)] == ["TaskSubmitted"]
    assert sched.leases_chained == 0 and sched.leases_tried == 1
    [task] = mem.api.board.tasks.values()
    assert task.status == "queued"
    sched.submitted_here([task.task_id])  # what the api does next
    assert await sched.round()
    assert [t for _, t in await types_in_log(mem)] == ["TaskSubmitted", "TaskLeased"]
    assert mem.api.board.tasks[task.task_id].status == "leased"
    assert clean(mem.log)


async def test_a_resent_submission_still_newest_in_the_log_gets_its_lease_once() -> None:
    """The api's acknowledgement of a submission was lost: its resend is a duplicate the
    log holds as its newest message, so the chained lease is valid; a second resend finds
    the lease there already (the log's copy, the same lease)."""
    mem = Memory()
    await mem.register("w1", slots=2)
    changes = submission(mem, spec())
    await mem.log.append(changes[0].appends())  # stored; the board never heard of it
    sched = scheduler(mem)
    assert await commit_with_lease(sched, changes) is not None
    assert [t for _, t in await types_in_log(mem)] == ["TaskSubmitted", "TaskLeased"]
    assert await commit_with_lease(sched, changes) is not None
    assert [t for _, t in await types_in_log(mem)] == ["TaskSubmitted", "TaskLeased"]
    assert sched.leases_chained == 1
    assert clean(mem.log)
