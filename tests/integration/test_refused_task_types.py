"""A worker that does not run some task type (a Windows worker: ``test``, ADR 0014) with the
real stack: placement gives it none of them while it takes the rest, `dtf explain` says
why, and a lease of one written by hand (as an older scheduler could) is declined with the
reason. The worker is a real one on this (Linux) host that advertises Windows' refusal:
nothing here runs Windows."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pytest

from agents.worker.agent import WorkerAgent
from agents.worker.capabilities import unsupported
from dtf_core.events.task import TaskLeased, TaskRequeued
from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL
from tests.helpers import until
from tests.integration.harness import Harness, stack

pytestmark = pytest.mark.anyio


async def windows_like(h: Harness, tmp_path: Path, worker_id: str) -> WorkerAgent:
    nc = await h.conn(worker_id, None, worker_id)
    w = WorkerAgent(nc, worker_id=worker_id, slots=2, heartbeat_interval=h.heartbeat,
                    browsers=False, cache_dir=tmp_path / "cache")
    w.capabilities = msgspec.structs.replace(w.capabilities, unsupported=unsupported("win32"))
    return await h.start(f"worker:{worker_id}", w, w.ready)  # type: ignore[no-any-return]


def chunk(tmp_path: Path) -> TaskSpec:
    return TaskSpec(type="test", config={"node_ids": ["test_x.py::test_x"],
                                         "rootdir": str(tmp_path), "invocation_dir": str(tmp_path)})


async def test_no_test_task_is_placed_on_a_worker_that_does_not_run_them(
        tmp_path: Path) -> None:
    async with stack(tmp_path, workers=0) as h:
        await windows_like(h, tmp_path, "win-1")
        test_id, cmd_id = (await h.api.submit([chunk(tmp_path), TaskSpec(
            type="command", config={"argv": [sys.executable, "-c", "pass"]})])).ids
        assert (await h.wait_status(cmd_id, TERMINAL)).status == "succeeded"
        explained = await h.api.explain(test_id)
        assert "No live worker meets its requirements:" in explained.lines
        assert any(line.startswith("  - win-1 does not run test tasks:") and "os.fork" in line
                   for line in explained.lines), explained.lines
        events = [e for _, e in await h.events(test_id)]
        assert not any(isinstance(e, TaskLeased) for e in events)  # placed in the same rounds
        assert (await h.wait_status(test_id, {"queued"})).status == "queued"


async def test_a_lease_of_a_refused_type_is_declined_with_the_reason(tmp_path: Path) -> None:
    """A lease written by hand, as a scheduler that ignores the refusal would: the worker
    declines it (requeued, no retry spent) and says why; it never starts a pytest session."""
    from agents.control.plans import task_change
    from agents.log.appender import append_groups
    from dtf_core import task as task_agg

    async with stack(tmp_path, workers=0, scheduler=False, recovery=False) as h:
        w = await windows_like(h, tmp_path, "win-1")
        [test_id] = (await h.api.submit([chunk(tmp_path)])).ids
        board = h.agents["api"].board

        async def folded() -> bool:
            return "win-1" in board.workers and test_id in board.tasks

        await until(folded, what="the worker and the task in the api's fold")
        lease = task_agg.decide_lease(board.tasks[test_id], worker_id="win-1",
                                      session=board.workers["win-1"].session, now=0.0,
                                      actor="by-hand")
        await append_groups(h.log, [task_change(board, test_id, [lease]).appends()])

        async def declined() -> list[TaskRequeued]:
            return [e for _, e in await h.events(test_id) if isinstance(e, TaskRequeued)]

        async def any_declined() -> bool:
            return bool(await declined())

        await until(any_declined, what="the lease to be declined")
        [requeued] = await declined()
        assert requeued.reason.startswith(
            "declined by worker win-1: this worker does not run test tasks: ")
        assert "os.fork" in requeued.reason and not requeued.counted
        assert (await h.wait_status(test_id, {"queued"})).status == "queued"
        assert w.pytest.servers == {} and w.pytest.starting == {}
