"""Compaction against a real server: tasks that ended long ago leave the control plane's
board, and every command and query about them still answers truthfully."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL
from tests.integration.harness import stack

pytestmark = pytest.mark.anyio


async def test_compacted_tasks_still_answer(tmp_path: Path) -> None:
    async with stack(tmp_path, workers=1, slots=4, control=True, compact_after=40) as h:
        board = h.agents["control"].folder.board
        old = TaskSpec(type="noop", idempotency_key="the-old-one")
        first = (await h.api.submit([old, TaskSpec(type="noop")])).ids
        for task_id in first:
            await h.wait_status(task_id, TERMINAL)
        later = (await h.api.submit([TaskSpec(type="noop")] * 20)).ids
        for task_id in later:
            await h.wait_status(task_id, TERMINAL)
        assert first[0] in board.finished and first[0] not in board.tasks

        rows = await h.api.tasks(ids=first)
        assert [(r.id, r.status, r.compacted) for r in rows] == [
            (first[0], "succeeded", True), (first[1], "succeeded", True)]
        detail = await h.api.task(first[0])  # folded again from the log
        assert detail.status == "succeeded" and detail.attempt == 1
        assert [e.type for e in detail.history][:3] == ["submitted", "leased",
                                                              "succeeded"]
        assert (await h.api.cancel(first[0])).status == "succeeded"
        again = await h.api.submit([old])  # the same idempotency key: the same old task
        assert again.ids == [first[0]] and again.created == 0
        dependent = TaskSpec(type="noop", dependencies=(first[0],))
        dep_id = (await h.api.submit([dependent])).ids[0]
        assert (await h.wait_status(dep_id, TERMINAL)).status == "succeeded"
        listed = await h.api.tasks(status="succeeded", limit=1000)
        assert {first[0], first[1], dep_id} <= {r.id for r in listed}
        explained = await h.api.explain(first[0])
        assert "long ago" in explained.lines[0]
