"""`dtf tasks` and GET /api/tasks read the newest tasks from the end of the board, which
keeps its tasks in the order of their last change: the same rows, in the same order, as
sorting every task by its last change, page after page."""

from __future__ import annotations

import random

from agents.control.queries import list_tasks
from dtf_core import commands as cmds
from dtf_core.events.task import TaskLeased, TaskStarted, TaskSubmitted, TaskSucceeded
from dtf_core.spec import TaskSpec
from projections.board import Board
from projections.snapshot import encode, restore


def board_with_history(seed: int) -> Board:
    rng = random.Random(seed)
    board = Board()
    seq = 0
    steps = {f"t-{i}": 0 for i in range(60)}
    leased_at: dict[str, int] = {}
    order = [TaskSubmitted, TaskLeased, TaskStarted, TaskSucceeded]
    while any(n < len(order) for n in steps.values()):
        task_id = rng.choice([t for t, n in steps.items() if n < len(order)])
        kind = order[steps[task_id]]
        seq += 1
        fields = {"task_id": task_id, "at": float(seq), "actor": "test"}
        if kind is TaskSubmitted:
            event = TaskSubmitted(**fields, spec=TaskSpec(type="noop"))
        elif kind is TaskLeased:
            event = TaskLeased(**fields, worker_id="w", session="s", attempt=1)
            leased_at[task_id] = seq
        elif kind is TaskStarted:
            event = TaskStarted(**fields, worker_id="w", attempt=1, fencing=leased_at[task_id])
        else:
            event = TaskSucceeded(**fields, worker_id="w", attempt=1, exit_code=0,
                                  fencing=leased_at[task_id])
        board.apply(seq, event)
        steps[task_id] += 1
        if rng.random() < 0.01:
            break  # leave some tasks part-way
    return board


def reference(board: Board, status: str | None) -> list[str]:
    rows = [t for t in board.tasks.values() if status is None or t.status == status]
    return [t.task_id for t in sorted(rows, key=lambda t: t.last_seq, reverse=True)]


def paged(board: Board, status: str | None, size: int) -> list[str]:
    seen: list[str] = []
    before = None
    while True:
        page = list_tasks(board, cmds.ListTasks(status=status, limit=size, before_seq=before))
        live = [r for r in page if not r.compacted]
        seen += [r.id for r in live]
        if len(live) < size:
            return seen
        before = live[-1].last_seq


def test_pages_match_sorting_every_task_and_survive_a_snapshot() -> None:
    for seed in range(20):
        board = board_with_history(seed)
        for status in (None, "queued", "leased", "running", "succeeded"):
            assert paged(board, status, 7) == reference(board, status)
        again = Board()
        restore(again, encode(board, board.last_seq))
        assert paged(again, None, 5) == reference(board, None)
