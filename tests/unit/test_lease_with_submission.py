"""A lease that is also its task's submission (ADR 0018): the control plane's api writes a
one-task submission that a round would lease at once as one message, the lease, under the
submission's own check. Given the log, when the api commits, then the events.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agents.control import plans
from agents.control.chain import commit_with_lease
from agents.control.scheduler import SchedulerAgent
from agents.log.commit import Change
from agents.log.memory import MemoryLog
from dtf_core import commands as cmds
from dtf_core.audit import Verifier
from dtf_core.events.codec import decode
from dtf_core.events.task import TaskLeased, TaskSubmitted, submission_in, with_submission
from dtf_core.policy import DefaultPolicy
from dtf_core.scheduling import leases_new
from dtf_core.spec import TaskSpec
from projections.board import Board
from tests.unit.test_control_on_memory_log import T0, Memory, spec

pytestmark = pytest.mark.anyio


def scheduler(mem: Memory, **kw: object) -> SchedulerAgent:
    sched = SchedulerAgent(None, mem.log, clock=mem.clock, folder=mem.api, **kw)  # type: ignore[arg-type]
    sched._requeue_all()
    return sched


def submission(mem: Memory, *specs: TaskSpec, actor: str = "alice",
               run_id: str | None = None) -> list[Change]:
    cmd = cmds.SubmitTasks(tasks=list(specs), actor=actor, run_id=run_id)
    changes = plans.plan_submit(mem.api.board, cmd, now=mem.now,
                                new_id=lambda: f"id{next(mem.ids)}").changes
    return [c for c in changes if isinstance(c.events[0], TaskSubmitted)]


async def types_in_log(mem: Memory) -> list[tuple[int, str]]:
    return [(r.seq, type(decode(r.subject, r.data)).__name__)
            for r in await mem.log.read(["dtf.evt.task.>"])]


def clean(log: MemoryLog) -> bool:
    verifier = Verifier()
    for r in log.records:
        if r.subject.startswith("dtf.evt.task."):
            verifier.feed(r.seq, decode(r.subject, r.data))
    return not verifier.result().violations


async def test_a_one_task_submission_is_written_as_its_lease() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = scheduler(mem)
    before = len(mem.log.records)
    results = await commit_with_lease(sched, submission(mem, spec(), run_id="r1"))
    assert results is not None and results[0] is not None
    [record] = mem.log.records[before:]  # one message, one fsync
    lease = decode(record.subject, record.data)
    assert isinstance(lease, TaskLeased) and record.subject.endswith(".leased.w1")
    assert (lease.submitted_by, lease.run_id, lease.spec) == ("alice", "r1", spec())
    assert submission_in(lease) == TaskSubmitted(task_id=lease.task_id, at=T0, actor="alice",
                                                 spec=spec(), run_id="r1")
    [task] = mem.api.board.tasks.values()
    assert (task.status, task.worker_id, task.lease_seq, task.owner, task.run_id) == (
        "leased", "w1", record.seq, "alice", "r1")
    assert sched.leases_with_submission == sched.leases_made == 1
    assert clean(mem.log)


async def test_a_fold_from_the_log_equals_the_writers_board() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    await commit_with_lease(scheduler(mem), submission(mem, spec()))
    replayed = Board()
    for r in mem.log.records:
        replayed.apply(r.seq, decode(r.subject, r.data))
    assert replayed.tasks == mem.api.board.tasks
    recovery = Board(from_leases=True)  # recovery reads leases only: the same task
    for r in mem.log.records:
        if ".leased." in r.subject:
            recovery.apply(r.seq, decode(r.subject, r.data))
    assert recovery.tasks == mem.api.board.tasks


@pytest.mark.parametrize("why", ["queue not empty", "no free slot",
                                 "a dependency", "deadline passed",
                                 "owner at quota", "standby"])
async def test_no_lease_at_submission_where_a_round_would_not_lease_at_once(why: str) -> None:
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
    assert sched.leases_with_submission == 0


async def test_a_batch_writes_leases_for_what_fits_and_submissions_for_the_rest() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = scheduler(mem)
    cmd = cmds.SubmitTasks(tasks=[spec()], actor="alice", run_id="r1")
    changes = submission(mem, spec(), spec(), spec()) + plans.plan_submit(
        mem.api.board, cmd, now=mem.now, new_id=lambda: "in-run").changes  # and RunCreated
    results = await commit_with_lease(sched, changes)
    assert results is not None and all(r is not None for r in results)
    kinds = [type(decode(r.subject, r.data)).__name__ for r in mem.log.records
             if r.subject.startswith(("dtf.evt.task.", "dtf.evt.run."))]
    assert sorted(kinds[:4]) == ["TaskLeased", "TaskLeased", "TaskSubmitted",
                                 "TaskSubmitted"]  # two slots: two in the policy's order
    assert kinds[4:] == ["RunCreated"]
    board = mem.api.board
    assert sorted(t.status for t in board.tasks.values()) == ["leased", "leased", "queued",
                                                              "queued"]
    assert "r1" in board.runs and [t.run_id for t in board.tasks.values()].count("r1") == 1
    assert sched.leases_with_submission == 2
    assert clean(mem.log)


async def test_a_task_waiting_on_another_of_its_batch_is_submitted() -> None:
    mem = Memory()
    await mem.register("w1", slots=4)
    batch = submission(mem, TaskSpec(type="noop", id="a"),
                       TaskSpec(type="noop", id="b", dependencies=("a",)))
    assert await commit_with_lease(scheduler(mem), batch) is not None
    assert [t for _, t in await types_in_log(mem)] == ["TaskLeased", "TaskSubmitted"]


async def test_the_lease_is_the_rounds_and_keeps_quotas() -> None:
    mem = Memory()
    await mem.register("w1")
    [change] = submission(mem, spec())
    [ev] = change.events
    assert isinstance(ev, TaskSubmitted)
    board = mem.api.board
    lease = leases_new([ev], board, now=T0, actor="s", quotas={}, policy=DefaultPolicy())
    assert list(lease) == [ev.task_id]
    assert isinstance(lease[ev.task_id], TaskLeased) and lease[ev.task_id].attempt == 1
    assert leases_new([ev], board, now=T0, actor="s", quotas={"alice": 0},
                      policy=DefaultPolicy()) == {}


async def test_a_submission_already_in_the_log_is_refused_and_the_round_leases() -> None:
    """The api's acknowledgement of a submission was lost and it is sent again: the task
    has an event now, so the log refuses the message (the submission's own check) and
    nothing is leased twice; the api folds and finds the task, the round leases it."""
    mem = Memory()
    await mem.register("w1", slots=2)
    changes = submission(mem, spec())
    await mem.log.append(changes[0].appends())  # stored; the board never heard of it
    sched = scheduler(mem)
    assert await commit_with_lease(sched, changes) == [None]
    assert [t for _, t in await types_in_log(mem)] == ["TaskSubmitted"]
    assert sched.leases_with_submission == sched.leases_made == 0
    await mem.fold(mem.api)
    [task] = mem.api.board.tasks.values()
    sched.submitted_here([task.task_id])  # what the api does once it finds the task
    assert await sched.round()
    assert [t for _, t in await types_in_log(mem)] == ["TaskSubmitted", "TaskLeased"]
    assert clean(mem.log)


async def test_a_resent_lease_with_submission_is_not_leased_again() -> None:
    mem = Memory()
    await mem.register("w1", slots=2)
    sched = scheduler(mem)
    changes = submission(mem, spec())
    assert await commit_with_lease(sched, changes) is not None
    assert await commit_with_lease(sched, changes) == [None]  # the task has its event
    assert [t for _, t in await types_in_log(mem)] == ["TaskLeased"]
    assert sched.leases_made == 1
    assert clean(mem.log)


def test_the_audit_counts_it_as_a_submission_and_checks_its_key() -> None:
    keyed = TaskSpec(type="noop", idempotency_key="k1")
    first = TaskSubmitted(task_id="t1", at=T0, actor="alice", spec=keyed)
    lease = TaskLeased(task_id="t1", at=T0, actor="s", worker_id="w1", session="s1",
                       attempt=1, spec=keyed)
    verifier = Verifier()
    verifier.feed(1, with_submission(lease, first))
    verifier.feed(2, TaskSubmitted(task_id="t2", at=T0, actor="alice", spec=keyed))
    audit = verifier.result()
    assert (audit.tasks, audit.open_tasks) == (2, 2)
    assert [(v.invariant, v.subject_id) for v in audit.violations] == [(5, "t2")]
    verifier = Verifier()  # and it is a lease: a second one while it is live is not
    verifier.feed(1, with_submission(lease, first))
    verifier.feed(2, lease)
    assert [v.invariant for v in verifier.result().violations] == [1]


def test_a_lease_naming_a_submitter_without_a_spec_is_no_task_and_no_crash() -> None:
    """Only a lease that carries the spec stands for a submission; another is a lease for
    a task the fold never saw (skipped), whichever rule reads it."""
    odd = TaskLeased(task_id="t1", at=T0, actor="s", worker_id="w1", session="s1",
                     attempt=1, submitted_by="alice")
    assert submission_in(odd) is None
    board = Board()
    assert board.apply(1, odd) is None and not board.tasks
    verifier = Verifier()
    verifier.feed(1, odd)
    assert verifier.result().tasks == 0
