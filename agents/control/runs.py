"""The api's answer about runs: each run with its tasks' count by status."""

from __future__ import annotations

from dtf_core import commands as cmds
from dtf_core.errors import InvalidInput, NotFound
from dtf_core.ids import validate_id
from dtf_core.replies import RunSummary
from projections.board import Board


def list_runs(board: Board, cmd: cmds.ListRuns) -> list[RunSummary]:
    """Newest first (the board keeps runs in the order they were created)."""
    if not 1 <= cmd.limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    if cmd.before is not None and cmd.before not in board.runs:
        raise NotFound(f"unknown run {validate_id(cmd.before, 'run id')}")
    out: list[RunSummary] = []
    skipping = cmd.before is not None
    for run in reversed(board.runs.values()):
        if skipping:
            skipping = run.run_id != cmd.before
            continue
        statuses: dict[str, int] = {}
        for task_id in run.task_ids:
            task = board.tasks.get(task_id)
            status = task.status if task is not None else board.finished.get(task_id)
            if status is not None:
                statuses[status] = statuses.get(status, 0) + 1
        out.append(RunSummary(id=run.run_id, name=run.name, created_at=run.at,
                              actor=run.actor, tasks=len(run.task_ids), statuses=statuses))
        if len(out) >= cmd.limit:
            break
    return out
