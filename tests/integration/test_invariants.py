"""DESIGN.md invariants 1-5 against a real nats-server."""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from agents.control.scheduler import SchedulerAgent
from agents.log.jetstream import JetStreamLog
from dtf_core import commands as cmds
from dtf_core.events.task import (
    ResultRefused,
    TaskLeased,
    TaskRequeued,
    TaskSubmitted,
    TaskSucceeded,
)
from dtf_core.events.worker import Capabilities
from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL, Report
from projections.board import Board
from tests.helpers import until
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio
PY = sys.executable


def live_lease_violations(events: list[tuple[int, object]]) -> list[str]:
    """Invariant 1 over a log: a lease only follows a task with no live lease."""
    live: dict[str, int] = {}
    bad = []
    for seq, ev in events:
        task_id = getattr(ev, "task_id", None)
        if task_id is None:
            continue
        if isinstance(ev, TaskLeased):
            if task_id in live:
                bad.append(f"{task_id}: lease {seq} while lease {live[task_id]} is live")
            live[task_id] = seq
        elif isinstance(ev, TaskRequeued) or type(ev).__name__ in (
            "TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskCancelled"
        ):
            live.pop(task_id, None)
    return bad


async def test_two_schedulers_race_exactly_one_lease(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=3, slots=100, scheduler=False) as h:
        res = await h.api.submit([TaskSpec(type="noop")] * 200)
        racers = []
        for name in ("scheduler-a", "scheduler-b"):
            nc = await h.conn(name)
            agent = SchedulerAgent(nc, JetStreamLog(nc), name=name)
            h.agents[name] = agent
            h.tasks[name + ":fold"] = asyncio.create_task(agent.folder.run())
            await agent.folder.caught_up.wait()
            for task_id in res.ids:
                agent.ready_q.push(agent.board.tasks[task_id])
            racers.append(agent)
        a, b = racers
        # Both decide on the same folded state, then append at the same time.
        await asyncio.gather(a.round(), b.round())
        assert a.leases_tried == 200 and b.leases_tried == 200
        assert a.leases_made + b.leases_made == 200
        for task_id in res.ids:
            await h.wait_status(task_id, TERMINAL)
        events = await h.events()
        assert live_lease_violations(events) == []
        leases: dict[str, int] = defaultdict(int)
        terminals: dict[str, int] = defaultdict(int)
        for _, ev in events:
            if isinstance(ev, TaskLeased):
                leases[ev.task_id] += 1
            if isinstance(ev, TaskSucceeded):
                terminals[ev.task_id] += 1
        assert all(leases[t] == 1 for t in res.ids)
        assert all(terminals[t] == 1 for t in res.ids)


async def test_late_finish_from_superseded_lease_is_refused_and_recorded(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        async def register(session: str) -> int:
            reply = await h.api.register(cmds.RegisterWorker(
                worker_id="fake", session=session, hostname="test", pid=1, slots=1,
                capabilities=Capabilities()))
            return reply.seq

        async def lease_of(task_id: str, session: str) -> int:
            found: list[int] = []

            async def leased() -> bool:
                found[:] = [seq for seq, ev in await h.events(task_id)
                            if isinstance(ev, TaskLeased) and ev.session == session]
                return bool(found)

            await until(leased, 10, f"a lease for session {session}")
            return found[0]

        await register("s1")
        res = await h.api.submit([TaskSpec(type="noop", retry_policy={"max_retries": 1})])
        task_id = res.ids[0]
        old = await lease_of(task_id, "s1")
        await register("s2")  # the worker restarted: recovery requeues s1's lease
        new = await lease_of(task_id, "s2")
        assert new > old
        late = Report(task_id=task_id, kind="succeeded", fencing=old, worker_id="fake")
        refused = await h.api.report(cmds.ReportResults(reports=[late]))
        assert refused and refused[0].task_id == task_id
        row = (await h.api.tasks(ids=[task_id]))[0]
        assert row.status == "leased"
        events = [e for _, e in await h.events(task_id)]
        assert any(isinstance(e, ResultRefused) and e.fencing == old for e in events)
        ok = Report(task_id=task_id, kind="succeeded", fencing=new, worker_id="fake")
        assert await h.api.report(cmds.ReportResults(reports=[ok])) == []
        assert (await h.api.tasks(ids=[task_id]))[0].status == "succeeded"


async def test_rebuilt_projection_equals_live(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=2) as h:
        res = await h.api.submit(
            [TaskSpec(type="noop")] * 100
            + [TaskSpec(type="command", config={"argv": [PY, "-c", "exit(2)"]})]
        )
        for task_id in res.ids:
            await h.wait_status(task_id, TERMINAL)
        api_board: Board = h.agents["api"].board
        assert await h.agents["api"].folder.catch_up()
        rebuilt = Board()
        for seq, ev in await h.events():
            rebuilt.apply(seq, ev)
        assert rebuilt.state_hash() == api_board.state_hash()
        assert len(rebuilt.tasks) == 101


async def test_same_command_twice_makes_one_task(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=1) as h:
        specs = [TaskSpec(type="noop", idempotency_key=f"k{i}") for i in range(20)]
        results = await asyncio.gather(*(h.api.submit(specs) for _ in range(4)))
        assert all(r.ids == results[0].ids for r in results)
        assert sum(r.created for r in results) == 20
        submitted = [e for _, e in await h.events() if isinstance(e, TaskSubmitted)]
        assert len(submitted) == 20


async def test_a_standby_scheduler_takes_over_when_the_leader_dies(tmp_path: Path) -> None:
    """Two schedulers with leadership: only the claim holder leases; when it stops, the
    standby takes a higher term after the claim expires and places the next tasks."""
    from dtf_core.events.lead import LeadershipClaimed
    from dtf_core.events.task import TaskLeased
    from dtf_core.task import TERMINAL
    from tests.helpers import until

    async with stack(tmp_path, workers=1, slots=4, scheduler=False) as h:
        agents = {}
        for name in ("s1", "s2"):
            nc = await h.conn(name)
            agents[name] = SchedulerAgent(nc, JetStreamLog(nc), name=name, lead=True,
                                          lead_ttl=0.6)
            await h.start(name, agents[name])

        async def someone_leads() -> bool:
            return any(a.leadership is not None and a.leadership.is_leader()
                       for a in agents.values())

        await until(someone_leads, what="a leader")
        leader = next(n for n, a in agents.items() if a.leadership and a.leadership.is_leader())
        standby = "s2" if leader == "s1" else "s1"
        first = (await h.api.submit([TaskSpec(type="noop") for _ in range(5)])).ids
        for task_id in first:
            await h.wait_status(task_id, TERMINAL)
        await h.stop(leader)
        second = (await h.api.submit([TaskSpec(type="noop") for _ in range(5)])).ids
        for task_id in second:
            assert (await h.wait_status(task_id, TERMINAL, timeout=10)).status == "succeeded"
        events = [e for _, e in await h.events()]
        # the lease's actor is the scheduler's holder id, "<name>@<host>:<pid>:<nonce>"
        by = {e.task_id: e.actor.split("@")[0] for e in events if isinstance(e, TaskLeased)}
        assert {by[t] for t in first} == {leader} and {by[t] for t in second} == {standby}
        claims = [e for e in events if isinstance(e, LeadershipClaimed)]
        terms = [c.term for c in claims]
        assert terms == sorted(terms) and claims[-1].holder.startswith(standby)
        assert claims[-1].term > next(c.term for c in claims if c.holder.startswith(leader))
