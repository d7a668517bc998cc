"""The control plane's decisions on the in-memory log, in milliseconds: the api's plans,
the scheduler's rounds and recovery's sweeps, each committed to one ``MemoryLog`` and
folded back as the agents fold it. The wiring (NATS, processes, JetStream's OCC) has its
own tests against a real server in tests/integration/."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agents.control import plans
from agents.control.base import log_only
from agents.control.recovery import RecoveryAgent
from agents.control.scheduler import SchedulerAgent
from agents.log.commit import commit
from agents.log.fold import Folder
from agents.log.memory import MemoryLog
from agents.wire.messages import Heartbeat
from dtf_core import commands as cmds
from dtf_core.errors import InvalidInput
from dtf_core.events.worker import Capabilities, Gpu
from dtf_core.spec import Requirements, RetryPolicy, TaskSpec
from dtf_core.task import Report, TaskState
from projections.board import Board

T0 = 10_000.0
pytestmark = pytest.mark.anyio


class Memory:
    """One in-memory log, the api's fold of it, and a clock the test moves."""

    def __init__(self) -> None:
        self.log = MemoryLog()
        self.now = T0
        self.mono = 0.0
        self.api = Folder(self.log, Board(), dead_letter=log_only)
        self.ids = iter(range(1, 1_000_000))

    def clock(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    async def fold(self, folder: Folder) -> None:
        await folder.fold(await self.log.read(folder.filters, folder.position + 1))

    async def do(self, plan: plans.Plan) -> object:
        results = await commit(self.log, self.api.board, plan.changes)
        assert all(seqs is not None for seqs in results)
        return plan.reply()

    async def register(self, worker_id: str, session: str = "s1", slots: int = 1,
                       gpus: int = 0, heartbeat_interval: float | None = None) -> None:
        await self.fold(self.api)
        caps = Capabilities(cpu_count=4, memory_gb=16.0,
                            gpus=tuple(Gpu(vendor="nvidia", name="H200", memory_gb=141.0)
                                       for _ in range(gpus)),
                            hardware=("cpu", "cuda") if gpus else ("cpu",))
        await self.do(plans.plan_register(self.api.board, cmds.RegisterWorker(
            worker_id=worker_id, session=session, hostname="h", pid=1, slots=slots,
            capabilities=caps, heartbeat_interval=heartbeat_interval, actor=worker_id),
            now=self.now))

    async def submit(self, *specs: TaskSpec, actor: str = "alice") -> list[str]:
        await self.fold(self.api)
        reply = await self.do(plans.plan_submit(
            self.api.board, cmds.SubmitTasks(tasks=list(specs), actor=actor), now=self.now,
            new_id=lambda: f"id{next(self.ids)}"))
        assert isinstance(reply, cmds.SubmitResult)
        return reply.ids

    async def report(self, task: TaskState, *kinds: str) -> None:
        await self.fold(self.api)
        reports = [Report(task_id=task.task_id, kind=kind, fencing=task.lease_seq,  # type: ignore[arg-type]
                          worker_id=task.worker_id, attempt=task.attempt, exit_code=0)
                   for kind in kinds]
        await self.do(plans.plan_report(self.api.board, cmds.ReportResults(
            reports=reports, actor=task.worker_id), now=self.now))

    def scheduler(self, **kw: object) -> SchedulerAgent:
        return SchedulerAgent(None, self.log, clock=self.clock, **kw)  # type: ignore[arg-type]

    def recovery(self, **kw: object) -> RecoveryAgent:
        return RecoveryAgent(None, self.log, clock=self.clock, monotonic=self.monotonic,
                             heartbeat_interval=1.0, misses=3, **kw)  # type: ignore[arg-type]

    async def round(self, sched: SchedulerAgent) -> bool:
        await self.fold(sched.folder)
        sched._requeue_all()
        return await sched.round()

    async def task(self, task_id: str) -> TaskState:
        await self.fold(self.api)
        return self.api.board.tasks[task_id]

    async def events(self, task_id: str) -> list[str]:
        return [r.subject.split(".")[4]
                for r in await self.log.read([f"dtf.evt.task.{task_id}.>"])]


def spec(*, deps: Sequence[str] = (), soft: Sequence[str] = (), retries: int = 0,
         **req: object) -> TaskSpec:
    return TaskSpec(type="noop", dependencies=tuple(deps), soft_dependencies=tuple(soft),
                    retry_policy=RetryPolicy(max_retries=retries),
                    requirements=Requirements(**req))  # type: ignore[arg-type]


@pytest.fixture
def mem() -> Memory:
    return Memory()


async def test_a_queued_task_is_leased_to_a_worker_that_matches(mem: Memory) -> None:
    await mem.register("cpu-only")
    await mem.register("gpu-host", gpus=1)
    [tid] = await mem.submit(spec(hardware=("cuda",), gpus=1))
    assert await mem.round(mem.scheduler()) is True
    t = await mem.task(tid)
    assert (t.status, t.worker_id, t.attempt) == ("leased", "gpu-host", 1)


async def test_two_schedulers_racing_write_one_lease(mem: Memory) -> None:
    await mem.register("w1", slots=4)
    await mem.register("w2", slots=4)
    [tid] = await mem.submit(spec())
    a, b = mem.scheduler(name="a"), mem.scheduler(name="b")
    await mem.fold(a.folder)
    await mem.fold(b.folder)
    a._requeue_all()
    b._requeue_all()
    await a.round()
    await b.round()  # decided on the same fold: the log refuses its lease
    assert (await mem.events(tid)).count("leased") == 1
    assert a.leases_made + b.leases_made == 1


async def test_no_free_slot_no_lease(mem: Memory) -> None:
    await mem.register("w1", slots=1)
    first, second = await mem.submit(spec(), spec())
    sched = mem.scheduler(waiting_after=None)
    await mem.round(sched)
    assert {(await mem.task(t)).status for t in (first, second)} == {"leased", "queued"}
    assert await mem.round(sched) is False


async def test_a_dependent_waits_for_its_dependency_then_runs(mem: Memory) -> None:
    await mem.register("w1", slots=2)
    [dep] = await mem.submit(spec())
    [child] = await mem.submit(spec(deps=[dep]))
    sched = mem.scheduler()
    await mem.round(sched)
    assert [(await mem.task(t)).status for t in (dep, child)] == ["leased", "queued"]
    await mem.report(await mem.task(dep), "started", "succeeded")
    await mem.round(sched)
    assert (await mem.task(child)).status == "leased"


async def test_a_failed_hard_dependency_fails_the_dependent_a_soft_one_does_not(
        mem: Memory) -> None:
    await mem.register("w1", slots=3)
    [dep] = await mem.submit(spec())
    hard, soft = await mem.submit(spec(deps=[dep]), spec(soft=[dep]))
    sched = mem.scheduler()
    await mem.round(sched)
    t = await mem.task(dep)
    await mem.report(t, "started", "failed")
    await mem.round(sched)
    failed = await mem.task(hard)
    assert failed.status == "cancelled"
    assert dep in failed.error
    assert (await mem.task(soft)).status == "leased"


async def test_an_owner_at_its_quota_waits_for_its_own_lease_to_end(mem: Memory) -> None:
    await mem.register("w1", slots=4)
    a1, a2 = await mem.submit(spec(), spec(), actor="alice")
    [b1] = await mem.submit(spec(), actor="bob")
    sched = mem.scheduler(quotas={"alice": 1})
    await mem.round(sched)
    statuses = {t: (await mem.task(t)).status for t in (a1, a2, b1)}
    assert sorted(statuses.values()) == ["leased", "leased", "queued"]
    assert statuses[b1] == "leased"


async def test_an_unstarted_lease_moves_to_an_idle_worker(mem: Memory) -> None:
    await mem.register("w1", slots=1)
    [tid] = await mem.submit(spec())
    sched = mem.scheduler(steal_after=5.0, waiting_after=None)
    await mem.round(sched)
    assert (await mem.task(tid)).worker_id == "w1"
    await mem.register("w2", slots=1)
    mem.now += 4.0
    assert await mem.round(sched) is False  # not stale yet
    mem.now += 2.0
    assert await mem.round(sched) is True
    t = await mem.task(tid)
    assert (t.status, t.worker_id, t.attempt) == ("leased", "w2", 2)


async def test_a_standby_scheduler_places_nothing(mem: Memory) -> None:
    await mem.register("w1")
    await mem.submit(spec())
    assert await mem.round(mem.scheduler(lead=True)) is False
    assert await mem.log.last_seq_on(["dtf.evt.task.*.leased.>"]) == 0


async def leased_on_w1(mem: Memory, **kw: object) -> tuple[str, RecoveryAgent]:
    await mem.register("w1")
    [tid] = await mem.submit(spec(**kw))  # type: ignore[arg-type]
    await mem.round(mem.scheduler())
    rec = mem.recovery()
    await mem.fold(rec.folder)
    return tid, rec


async def sweep(mem: Memory, rec: RecoveryAgent) -> int:
    await mem.fold(rec.folder)
    return await rec.sweep()


async def test_a_silent_worker_is_lost_and_its_lease_requeued_at_no_retry_cost(
        mem: Memory) -> None:
    tid, rec = await leased_on_w1(mem)
    rec.heard("w1", Heartbeat(session="s1", at=mem.now, leases=[]))
    assert await sweep(mem, rec) == 0
    mem.mono += 3.5  # three missed heartbeats of one second
    assert await sweep(mem, rec) == 1  # lost; its leases go at the next sweep
    assert await sweep(mem, rec) == 1
    await mem.fold(mem.api)
    assert mem.api.board.workers["w1"].status == "lost"
    t = await mem.task(tid)
    assert (t.status, t.failures, t.losses) == ("queued", 0, 1)
    assert await sweep(mem, rec) == 0  # decided once


@pytest.mark.parametrize(("interval", "lost_after"), [(None, 3.5), (0.5, 3.5), (4.0, 12.5)])
async def test_a_worker_is_given_its_misses_at_the_slower_of_its_interval_and_recovery_s(
        mem: Memory, interval: float | None, lost_after: float) -> None:
    """Recovery (one second, three misses) next to a worker that said it beats every
    ``interval`` seconds: a slower worker is not lost between two of its beats."""
    await mem.register("w1", heartbeat_interval=interval)
    rec = mem.recovery()
    rec.heard("w1", Heartbeat(session="s1", at=mem.now, leases=[]))
    assert await sweep(mem, rec) == 0
    mem.mono += lost_after - 1.0  # silent, but within its misses
    assert await sweep(mem, rec) == 0
    mem.mono += 1.0
    assert await sweep(mem, rec) == 1
    await mem.fold(mem.api)
    assert mem.api.board.workers["w1"].status == "lost"


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), 1e9])
async def test_a_registration_with_a_heartbeat_interval_out_of_range_is_refused(
        mem: Memory, interval: float) -> None:
    with pytest.raises(InvalidInput, match=r"heartbeat_interval takes 0\.05 to 3600 seconds"):
        await mem.register("w1", heartbeat_interval=interval)
    assert "w1" not in mem.api.board.workers


async def test_a_restarted_worker_s_old_lease_is_requeued(mem: Memory) -> None:
    tid, rec = await leased_on_w1(mem)
    await mem.register("w1", session="s2")
    assert await sweep(mem, rec) == 1
    assert (await mem.task(tid)).status == "queued"
    assert (await mem.events(tid))[-1] == "requeued"


async def test_a_lease_its_worker_does_not_hold_is_requeued_after_the_grace(
        mem: Memory) -> None:
    tid, rec = await leased_on_w1(mem)
    t = await mem.task(tid)
    rec.heard("w1", Heartbeat(session="s1", at=mem.now, leases=[t.lease_seq]))
    assert await sweep(mem, rec) == 0
    mem.mono += 1.0
    rec.heard("w1", Heartbeat(session="s1", at=mem.now, leases=[]))  # dropped it
    assert await sweep(mem, rec) == 0  # within the grace
    mem.mono += rec.unheld_grace
    rec.heard("w1", Heartbeat(session="s1", at=mem.now, leases=[]))
    assert await sweep(mem, rec) == 1
    t = await mem.task(tid)
    assert (t.status, t.failures, t.losses) == ("queued", 0, 1)


async def test_a_worker_without_lease_lists_keeps_its_leases(mem: Memory) -> None:
    tid, rec = await leased_on_w1(mem)
    for _ in range(5):
        mem.mono += 1.0
        rec.heard("w1", Heartbeat(session="s1", at=mem.now))  # leases not listed
        assert await sweep(mem, rec) == 0
    assert (await mem.task(tid)).status == "leased"


async def test_a_stopped_worker_s_lease_is_requeued_cleanly(mem: Memory) -> None:
    tid, rec = await leased_on_w1(mem)
    await mem.fold(mem.api)
    await mem.do(plans.plan_stop_worker(mem.api.board, cmds.StopWorker(
        worker_id="w1", session="s1", actor="w1"), now=mem.now))
    assert await sweep(mem, rec) == 1
    t = await mem.task(tid)
    assert (t.status, t.failures, t.losses) == ("queued", 0, 0)


async def test_a_standby_recovery_declares_nothing(mem: Memory) -> None:
    await mem.register("w1")
    rec = mem.recovery(lead=True)
    await mem.fold(rec.folder)
    mem.mono += 100
    assert await rec.sweep() == 0



async def test_a_resent_event_is_folded_as_the_log_kept_it(mem: Memory) -> None:
    """A writer whose append was stored but not acknowledged decides again, later: the log
    drops the resend as a duplicate and keeps its first copy; the writer's board must hold
    that copy, not the one it decided the second time (else it differs from a replay)."""
    from agents.log.commit import Change
    from dtf_core.events.run import RunCreated
    from projections.board import Board

    first = RunCreated(run_id="r1", task_ids=("t1",), name="first", at=T0, actor="alice")
    again = RunCreated(run_id="r1", task_ids=("t1",), name="first", at=T0 + 9, actor="alice")
    await commit(mem.log, Board(), [Change([first], None, None)])  # stored; its ack "lost"
    writer = Board()
    [seqs] = await commit(mem.log, writer, [Change([again], None, None)])
    assert seqs is not None and seqs.duplicates == {1}
    assert "r1" not in writer.runs  # not its own copy: the fold brings the stored one
    await mem.fold(mem.api)
    assert mem.api.board.runs["r1"].at == T0
