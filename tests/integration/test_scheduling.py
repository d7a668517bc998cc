"""Placement with real workers that advertise different capabilities: groups, cordon,
drain and `dtf explain`."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

from agents.log.jetstream import JetStreamLog
from cli import render
from dtf_core import commands as cmds
from dtf_core.events.task import TaskDeadlineMissed, TaskLeased, TaskRequeued
from dtf_core.events.worker import Capabilities, WorkerCapabilitiesChanged
from dtf_core.spec import Requirements, TaskSpec
from dtf_core.task import TERMINAL
from tests.gates import Gate
from tests.helpers import until
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio


async def test_groups_route_and_explain_says_why(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        await h.add_worker("cpu-1", slots=1, heartbeat_interval=0.2)
        await h.add_worker("lab-1", slots=1, group="lab2", tags=("gpu-a",),
                           heartbeat_interval=0.2)
        res = await h.api.submit([
            TaskSpec(type="noop", requirements=Requirements(worker_group="lab2")),
            TaskSpec(type="noop", requirements=Requirements(hardware=("gpu-a",))),
            TaskSpec(type="noop", requirements=Requirements(hardware=("tpu",))),
        ])
        lab, tagged, nowhere = res.ids
        for task_id in (lab, tagged):
            assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"
            leases = [e for _, e in await h.events(task_id) if isinstance(e, TaskLeased)]
            assert [e.worker_id for e in leases] == ["lab-1"]
            assert leases[0].why is not None
            assert "cpu-1" in leases[0].why.filtered
        explained = await h.api.explain(lab)
        assert "Attempt 1 was placed on worker lab-1." in explained.lines
        assert any("cpu-1 is in group '(none)', needs 'lab2'" in ln for ln in explained.lines)
        waiting = await h.api.explain(nowhere)
        assert waiting.status == "queued"
        assert "No live worker meets its requirements:" in waiting.lines
        assert "  - cpu-1 lacks hardware tpu" in waiting.lines


async def test_cordon_stops_new_leases_and_uncordon_resumes(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=1, slots=1) as h:
        reply = await h.api.manage_worker("w1", "cordon", "maintenance")
        assert reply.scheduling == "cordoned"
        row = (await h.api.workers())[0]
        assert (row.scheduling, render._worker_state(row)) == (
            "cordoned", "alive (cordoned)")  # what `dtf workers` shows
        task_id = (await h.api.submit([TaskSpec(type="noop")])).ids[0]
        waiting = await h.api.explain(task_id)
        assert "  - w1 is cordoned" in waiting.lines
        assert (await h.api.tasks(ids=[task_id]))[0].status == "queued"
        await h.api.manage_worker("w1", "uncordon")
        assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"


async def test_drain_moves_leases_that_have_not_started(tmp_path: Path) -> None:
    """A registered worker that never starts its leases (no process behind it) keeps them
    in `leased`; draining requeues them, and another worker runs them."""
    async with stack(tmp_path, workers=0, recovery=False) as h:
        await h.api.call(cmds.RegisterWorker(worker_id="stuck", session="s1", hostname="h",
                                             pid=1, slots=4, capabilities=Capabilities()))
        res = await h.api.submit([TaskSpec(type="noop") for _ in range(3)])

        async def all_leased() -> bool:
            rows = await h.api.tasks(ids=res.ids)
            return all(r.status == "leased" for r in rows)

        await until(all_leased, what="three leases on the stuck worker")
        drained = await h.api.manage_worker("stuck", "drain")
        assert sorted(drained.migrated) == sorted(res.ids)
        await h.add_worker("fresh", slots=4, heartbeat_interval=0.2)
        for task_id in res.ids:
            assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"
            events = [e for _, e in await h.events(task_id)]
            assert any(isinstance(e, TaskRequeued) and "draining" in e.reason for e in events)
            assert [e.worker_id for e in events if isinstance(e, TaskLeased)] == ["stuck", "fresh"]


async def test_a_missed_deadline_is_flagged_and_explained(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        import time

        task_id = (await h.api.submit([TaskSpec(type="noop", deadline=time.time() + 0.3)])).ids[0]

        async def flagged() -> bool:
            return any(isinstance(e, TaskDeadlineMissed) for _, e in await h.events(task_id))

        await until(flagged, what="the deadline flag")
        assert any("missed its deadline" in ln for ln in (await h.api.explain(task_id)).lines)
        await h.add_worker("w1", slots=1, heartbeat_interval=0.2)  # a late task still runs
        assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"


async def test_fair_share_with_a_real_worker(tmp_path: Path) -> None:
    """Run "huge" is queued before run "small"; on one slot, the small run's tasks are not
    left until the huge one is done."""
    async with stack(tmp_path, workers=0) as h:
        huge = (await h.api.submit([TaskSpec(type="noop") for _ in range(8)],
                                   run_id="huge")).ids
        small = (await h.api.submit([TaskSpec(type="noop") for _ in range(2)],
                                    run_id="small")).ids
        await h.add_worker("w1", slots=1, heartbeat_interval=0.2)
        for task_id in huge + small:
            await h.wait_status(task_id, TERMINAL)
        order = [e.task_id for _, e in await h.events() if isinstance(e, TaskLeased)]
        assert max(order.index(s) for s in small) <= 4, order


async def test_cancelling_a_run_kills_its_process_trees(tmp_path: Path) -> None:
    import sys

    import psutil

    from cli.client_cmds import Target, cancel_run

    async with stack(tmp_path, workers=1, slots=2) as h:
        pidfiles = [tmp_path / f"child{i}.pid" for i in range(2)]
        # each task starts a child and then blocks until it is killed
        block = "import threading; threading.Event().wait()"
        script = ("import subprocess, sys; "
                  f"p = subprocess.Popen([sys.executable, '-c', {block!r}]); "
                  f"open(sys.argv[1], 'w').write(str(p.pid)); {block}")
        specs = [TaskSpec(type="command", config={"argv": [sys.executable, "-c", script,
                                                           str(f)]}) for f in pidfiles]
        ids = (await h.api.submit(specs, run_id="doomed")).ids

        async def children_started() -> bool:
            return all(f.exists() and f.read_text() for f in pidfiles)

        await until(children_started, what="both tasks to start their child processes")
        children = [int(f.read_text()) for f in pidfiles]
        cancelled = await cancel_run(Target(h.url), "doomed")
        assert sorted(cancelled) == sorted(ids)
        for task_id in ids:
            assert (await h.wait_status(task_id, TERMINAL, timeout=5)).status == "cancelled"

        async def children_gone() -> bool:
            return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                           for p in children)

        await until(children_gone, timeout=2, what="the grandchildren to be killed")


async def test_simulate_replays_the_log_under_another_policy(tmp_path: Path) -> None:
    from cli.client_cmds import Target, simulate
    from cli.render import simulation

    async with stack(tmp_path, workers=1, slots=1) as h:
        ids = (await h.api.submit([TaskSpec(type="noop") for _ in range(5)], run_id="a")).ids
        ids += (await h.api.submit([TaskSpec(type="noop") for _ in range(2)], run_id="b")).ids
        for task_id in ids:
            await h.wait_status(task_id, TERMINAL)
        res = await simulate(Target(h.url), "fifo", 1)
        assert res["actual"]["tasks"] == res["simulated"]["tasks"] == 7
        assert res["policy"] == "fifo"
        table = simulation(res)
        assert "makespan" in table and "policy fifo" in table and "fairness" in table
        with pytest.raises(Exception, match="unknown scheduling policy"):
            await simulate(Target(h.url), "no-such-policy", 1)


async def test_a_quota_caps_one_users_live_leases(tmp_path: Path) -> None:

    async with stack(tmp_path, workers=0, scheduler=False) as h:
        from agents.control.scheduler import SchedulerAgent
        from agents.log.jetstream import JetStreamLog

        nc = await h.conn("quota-scheduler")
        await h.start("scheduler", SchedulerAgent(nc, JetStreamLog(nc), quotas={"alice": 1}))
        await h.add_worker("w1", slots=4, heartbeat_interval=0.2)
        gate = Gate(tmp_path / "gate")
        held = gate.task()  # runs until the gate opens: alice's first lease stays live
        alice = (await h.api.ask(cmds.SubmitTasks(tasks=[held] * 3, actor="alice"),
                                 cmds.SubmitResult)).ids
        bob = (await h.api.ask(cmds.SubmitTasks(tasks=[held] * 2, actor="bob"),
                               cmds.SubmitResult)).ids

        async def bob_and_one_of_alice_run() -> bool:
            rows = await h.api.tasks(ids=alice + bob)
            return sum(r.status == "running" for r in rows) == 3

        await until(bob_and_one_of_alice_run, what="bob's two tasks and one of alice's")
        statuses = sorted(r.status for r in await h.api.tasks(ids=alice))
        assert statuses == ["queued", "queued", "running"]  # the quota: one at a time
        gate.open()
        for task_id in alice + bob:
            assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"
        spans = {}
        for task_id in alice:
            events = [e for _, e in await h.events(task_id)]
            lease = next(e.at for e in events if isinstance(e, TaskLeased))
            end = max(e.at for e in events)
            spans[task_id] = (lease, end)
        ordered = sorted(spans.values())
        for (_, end), (start, _) in itertools.pairwise(ordered):
            assert start >= end - 0.05  # alice never had two leases at once


async def test_a_worker_declines_a_lease_that_would_overcommit_it(tmp_path: Path) -> None:
    """Placement never overcommits a worker; a lease that would (written here by hand, as
    a second, confused scheduler could) is declined by the worker and requeued."""

    from agents.control.plans import task_change
    from agents.log.appender import append_groups
    from dtf_core import task as task_agg

    async with stack(tmp_path, workers=1, slots=1, scheduler=False, recovery=False) as h:
        gate = Gate(tmp_path / "gate")  # the first task holds the only slot until it opens
        ids = (await h.api.submit([gate.task(), gate.task()])).ids
        board = h.agents["api"].board
        worker = board.workers["w1"]
        for task_id in ids:
            lease = task_agg.decide_lease(board.tasks[task_id], worker_id="w1",
                                          session=worker.session, now=0.0, actor="by-hand")
            await append_groups(h.log, [task_change(board, task_id, [lease]).appends()])

        async def declined() -> bool:
            events = [e for _, e in await h.events(ids[1])]
            return any(isinstance(e, TaskRequeued) and "declined by worker w1" in e.reason
                       for e in events)

        await until(declined, what="the second lease to be declined")
        assert (await h.wait_status(ids[1], {"queued"})).status == "queued"  # api folded
        gate.open()
        assert (await h.wait_status(ids[0], TERMINAL)).status == "succeeded"


async def test_a_soft_dependency_waits_but_does_not_fail_its_dependent(tmp_path: Path) -> None:
    import sys

    async with stack(tmp_path, workers=1, slots=2) as h:
        failing = TaskSpec(type="command", config={"argv": [sys.executable, "-c", "exit(3)"]})
        first = (await h.api.submit([failing])).ids[0]
        hard, soft = (await h.api.submit([
            TaskSpec(type="noop", dependencies=(first,)),
            TaskSpec(type="noop", soft_dependencies=(first,)),
        ])).ids
        assert (await h.wait_status(first, TERMINAL)).status == "failed"
        assert (await h.wait_status(hard, TERMINAL)).status == "cancelled"
        assert (await h.wait_status(soft, TERMINAL)).status == "succeeded"
        soft_lease = next(s for s, e in await h.events(soft) if isinstance(e, TaskLeased))
        first_end = max(s for s, _ in await h.events(first))
        assert soft_lease > first_end  # it waited for the end


async def test_an_idle_worker_steals_leases_that_sit_unstarted(tmp_path: Path) -> None:
    from agents.control.scheduler import SchedulerAgent
    from agents.log.jetstream import JetStreamLog

    async with stack(tmp_path, workers=0, scheduler=False, recovery=False) as h:
        nc = await h.conn("stealing-scheduler")
        await h.start("scheduler", SchedulerAgent(nc, JetStreamLog(nc), steal_after=0.5))
        await h.api.call(cmds.RegisterWorker(worker_id="stalled", session="s1", hostname="h",
                                             pid=1, slots=4, capabilities=Capabilities()))
        ids = (await h.api.submit([TaskSpec(type="noop") for _ in range(3)])).ids

        async def all_leased() -> bool:
            return all(r.status == "leased" for r in await h.api.tasks(ids=ids))

        await until(all_leased, what="three leases on the stalled worker")
        await h.add_worker("idle", slots=4)
        for task_id in ids:
            assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"
            events = [e for _, e in await h.events(task_id)]
            kinds = [type(e).__name__ for e in events]
            # stalled lease, then requeued, then the idle worker's lease: one live lease
            assert kinds[:4] == ["TaskSubmitted", "TaskLeased", "TaskRequeued", "TaskLeased"]
            assert [e.worker_id for e in events if isinstance(e, TaskLeased)] == [
                "stalled", "idle"]
            assert "stolen by idle worker idle" in next(
                e.reason for e in events if isinstance(e, TaskRequeued))


async def test_audit_verify_and_replay_over_a_real_log(tmp_path: Path) -> None:
    from agents.control.projector import ProjectorAgent
    from cli.audit_cmds import history, replay
    from cli.audit_verify import audit_verify
    from cli.client_cmds import Target
    from projections.board import Board

    async with stack(tmp_path, workers=1, slots=2) as h:
        nc = await h.conn("projector")
        await h.start("projector", ProjectorAgent(nc, JetStreamLog(nc), tmp_path / "p.duckdb"))
        ids = (await h.api.submit([TaskSpec(type="noop") for _ in range(4)], run_id="r1")).ids
        for task_id in ids:
            await h.wait_status(task_id, TERMINAL)
        from dtf_core.events.task import TaskSucceeded

        ends = sorted(s for s, e in await h.events() if isinstance(e, TaskSucceeded))
        middle = ends[0]  # the first task has ended, the last has not
        target = Target(h.url)

        async def projected() -> bool:
            try:
                msg = await h.nc.request("dtf.q.projector", b'{"op":"status"}', timeout=2)
            except Exception:  # not subscribed yet
                return False
            return int(__import__("json").loads(msg.data)["last_seq"]) >= middle

        await until(projected, what="the projector to catch up")
        result = await audit_verify(target)
        assert result["clean"], result["violations"]
        assert result["tasks"] == 4 and result["open_tasks"] == 0
        assert result["projection"]["checked"] and result["projection"]["equal"]
        assert result["live_state"]["checked"] and result["live_state"]["equal"]
        assert result["snapshot"] == {"checked": False, "why": "no snapshot stored"}
        from agents.log import snapshots

        api_board = h.agents["api"].board
        await snapshots.save(h.nc.jetstream(), api_board, api_board.last_seq)
        again = await audit_verify(target)
        assert again["clean"] and again["snapshot"]["equal"], again["snapshot"]
        fast, whole = await replay(target, "999999"), await replay(target, "999999", False)
        assert fast.pop("snapshot_seq") == api_board.last_seq and whole.pop("snapshot_seq") == 0
        assert fast == whole  # from the snapshot plus the tail: the same state as the log's
        short = Board()  # a snapshot that claims a position it did not fold up to
        for seq, ev in [(s, e) for s, e in await h.events()][:-1]:
            short.apply(seq, ev)
        await snapshots.save(h.nc.jetstream(), short, api_board.last_seq)
        bad = await audit_verify(target)
        assert not bad["clean"] and bad["snapshot"]["equal"] is False
        assert [v["invariant"] for v in bad["violations"]] == [7]

        rows = await history(target, "run", "r1")
        assert {r["type"] for r in rows} >= {"created", "submitted", "leased", "succeeded"}
        assert all(r["actor"] for r in rows)
        then = await replay(target, str(middle))
        now = await replay(target, "999999", snapshot=False)
        assert then["seq"] == middle and then["tasks"].get("succeeded", 0) >= 1
        assert now["tasks"] == {"succeeded": 4} and now["snapshot_seq"] == 0
        trusted = await replay(target, "999999")  # from the bad snapshot: it says so
        assert trusted["snapshot_seq"] == api_board.last_seq
        assert trusted["tasks"] != now["tasks"]
        assert then["state_hash"] != now["state_hash"]
        from cli import render

        assert "clean: invariants 1, 2, 3, 5 and 6 hold" in render.audit(result)
        assert "the api's state at seq" in render.audit(again)
        assert "plus the tail equals a replay" in render.audit(again)
        assert "equals a rebuild from the log" in render.audit(result)
        assert " by " in render.history(rows) and "tasks: 4 succeeded" in render.replayed(now)


async def test_long_waits_are_explained_once_per_reason(tmp_path: Path) -> None:
    from agents.control.scheduler import SchedulerAgent
    from dtf_core.events.task import TaskWaiting

    async with stack(tmp_path, workers=0, scheduler=False) as h:
        nc = await h.conn("explaining-scheduler")
        scheduler = SchedulerAgent(nc, JetStreamLog(nc), waiting_after=0.2)
        await h.start("scheduler", scheduler)
        await h.add_worker("cpu-1", slots=1)
        task_id = (await h.api.submit([TaskSpec(
            type="noop", requirements=Requirements(hardware=("tpu",)))])).ids[0]

        async def explained() -> bool:
            return any(isinstance(e, TaskWaiting) for _, e in await h.events(task_id))

        await until(explained, what="a waiting explanation")
        sweeps = scheduler.waiting_sweeps

        async def three_more_sweeps() -> bool:
            return scheduler.waiting_sweeps >= sweeps + 3

        await until(three_more_sweeps, what="three more sweeps")  # none writes it again
        waits = [e for _, e in await h.events(task_id) if isinstance(e, TaskWaiting)]
        assert [(w.reason, w.detail) for w in waits] == [
            ("no_match", "no live worker meets its requirements")]
        await h.add_worker("tpu-1", slots=1, tags=("tpu",))
        assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"


async def test_browser_features_join_after_the_worker_registered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A headless browser takes a second or more to launch: the worker registers and takes
    work without waiting for it, and its features join the capabilities by an event."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gate = Gate(tmp_path / "browser-gate")
    fake = bin_dir / "chromium"
    fake.write_text(f"#!{sys.executable}\n" + gate.script(
        "print('<html><title>dtf-webgpu-yes-webnn-no</title></html>')"))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DTF_DETECT_BROWSER", raising=False)
    async with stack(tmp_path, workers=1, slots=1, browsers=True) as h:  # ready meanwhile
        hardware = (await h.api.workers())[0].capabilities.hardware
        assert "webgpu" not in hardware
        task_id = (await h.api.submit([TaskSpec(
            type="noop", requirements=Requirements(hardware=("webgpu",)))])).ids[0]
        gate.open()
        assert (await h.wait_status(task_id, TERMINAL)).status == "succeeded"
        row = (await h.api.workers())[0]
        assert "webgpu" in row.capabilities.hardware, row
        events = [e for _, e in await h.events() if isinstance(e, WorkerCapabilitiesChanged)]
        assert [e.capabilities.hardware[-1] for e in events] == ["webgpu"]
