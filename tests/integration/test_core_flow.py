"""Submit -> lease -> run -> result against a real nats-server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dtf_core.errors import InvalidInput, NotFound
from dtf_core.spec import TaskSpec, command_spec
from tests.gates import Gate
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio
PY = sys.executable


async def test_command_runs_and_succeeds(tmp_path: Path) -> None:
    async with stack(tmp_path) as h:
        spec = command_spec([PY, "-c", "print('hello from dtf')"])
        res = await h.api.submit([spec])
        row = await h.wait_status(res.ids[0], {"succeeded", "failed"})
        assert row.status == "succeeded", row
        assert row.exit_code == 0
        types = [type(e).__name__ for _, e in await h.events(res.ids[0])]
        assert types == ["TaskSubmitted", "TaskLeased", "TaskStarted", "TaskSucceeded"]


async def test_noop_needs_three_events(tmp_path: Path) -> None:
    async with stack(tmp_path) as h:
        res = await h.api.submit([TaskSpec(type="noop")] * 50)
        for task_id in res.ids:
            await h.wait_status(task_id, {"succeeded"})
        events = await h.events()
        task_events = [e for _, e in events if hasattr(e, "task_id")]
        assert len(task_events) == 150


async def test_failure_retries_then_fails(tmp_path: Path) -> None:
    async with stack(tmp_path) as h:
        spec = command_spec([PY, "-c", "raise SystemExit(3)"],
                            retry_policy={"max_retries": 2, "retry_delay_seconds": 0.05})
        res = await h.api.submit([spec])
        row = await h.wait_status(res.ids[0], {"succeeded", "failed"})
        assert row.status == "failed"
        assert row.exit_code == 3
        assert row.attempt == 3
        types = [type(e).__name__ for _, e in await h.events(res.ids[0])]
        assert types.count("TaskRequeued") == 2
        assert types[-1] == "TaskFailed"


async def test_timeout_kills_the_process_tree(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    gate = Gate(tmp_path / "gate")  # never opened: both processes run until killed
    script = (
        "import subprocess\n"
        f"p = subprocess.Popen({gate.argv()!r})\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        + gate.script()
    )
    async with stack(tmp_path) as h:
        res = await h.api.submit([command_spec([PY, "-c", script], timeout_seconds=1.0)])
        row = await h.wait_status(res.ids[0], {"timed_out", "failed", "succeeded"})
        assert row.status == "timed_out"
        pid = int(pidfile.read_text())
        assert not _alive(pid), "the grandchild outlived the timeout"


async def test_cancel_running_task(tmp_path: Path) -> None:
    async with stack(tmp_path) as h:
        gate = Gate(tmp_path / "gate")  # never opened: the task runs until cancelled
        res = await h.api.submit([gate.task()])
        await h.wait_status(res.ids[0], {"running"})
        await h.api.cancel(res.ids[0])
        row = await h.wait_status(res.ids[0], {"cancelled", "failed", "succeeded"}, timeout=5)
        assert row.status == "cancelled"


async def test_cancel_queued_and_unknown(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        res = await h.api.submit([TaskSpec(type="noop")])
        assert (await h.api.cancel(res.ids[0])).status == "cancelled"
        with pytest.raises(NotFound):
            await h.api.cancel("no-such-task")
        with pytest.raises(InvalidInput):
            await h.api.cancel("bad.id")


async def test_idempotency_key_makes_one_task(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        spec = TaskSpec(type="noop", idempotency_key="build-42")
        a = await h.api.submit([spec])
        b = await h.api.submit([spec])
        assert a.ids == b.ids and a.created == 1 and b.created == 0
        submitted = [e for _, e in await h.events(a.ids[0]) if type(e).__name__ == "TaskSubmitted"]
        assert len(submitted) == 1


async def test_dependencies_wait_and_fail(tmp_path: Path) -> None:
    async with stack(tmp_path) as h:
        first = TaskSpec(type="command", id="dep-a", config={"argv": [PY, "-c", "exit(1)"]})
        second = TaskSpec(type="noop", id="dep-b", dependencies=("dep-a",))
        await h.api.submit([second, first])
        row = await h.wait_status("dep-b", {"cancelled", "succeeded"})
        assert row.status == "cancelled"
        assert "dep-a" in row.error
        with pytest.raises(InvalidInput, match="cycle"):
            await h.api.submit([TaskSpec(type="noop", id="c1", dependencies=("c2",)),
                                TaskSpec(type="noop", id="c2", dependencies=("c1",))])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_control_plane_shares_one_fold(tmp_path: Path) -> None:
    async with stack(tmp_path, control=True) as h:
        ok = command_spec([PY, "-c", "print('ok')"])
        bad = command_spec([PY, "-c", "raise SystemExit(4)"])
        res = await h.api.submit([ok, bad, TaskSpec(type="noop")])
        rows = [await h.wait_status(t, {"succeeded", "failed"}) for t in res.ids]
        assert [r.status for r in rows] == ["succeeded", "failed", "succeeded"]
        plane = h.agents["api"]
        assert plane.board is h.agents["scheduler"].board is h.agents["recovery"].board


async def test_started_and_finished_reported_together(tmp_path: Path) -> None:
    """A worker whose reporter was busy sends `started` and `succeeded` in one batch."""
    from dtf_core import commands as cmds
    from dtf_core.events.worker import Capabilities
    from dtf_core.task import Report

    async with stack(tmp_path, workers=0) as h:
        await h.api.call(cmds.RegisterWorker(worker_id="wx", session="s1", hostname="h", pid=1,
                                             slots=1, capabilities=Capabilities()))
        res = await h.api.submit([command_spec(["true"])])
        row = await h.wait_status(res.ids[0], {"leased"})
        lease = next(seq for seq, e in await h.events(row.id)
                     if type(e).__name__ == "TaskLeased")
        both = [Report(task_id=row.id, kind="started", fencing=lease, worker_id="wx"),
                Report(task_id=row.id, kind="succeeded", fencing=lease, worker_id="wx",
                       exit_code=0)]
        assert await h.api.report(cmds.ReportResults(reports=both)) == []
        assert (await h.api.tasks(ids=[row.id]))[0].status == "succeeded"
        types = [type(e).__name__ for _, e in await h.events(row.id)]
        assert types == ["TaskSubmitted", "TaskLeased", "TaskStarted", "TaskSucceeded"]
