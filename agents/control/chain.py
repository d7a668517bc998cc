"""Submissions written with their leases as one message each (ADR 0018), for the api of a
control plane whose scheduler would lease them at once."""

from __future__ import annotations

from agents.control.scheduler import SchedulerAgent
from agents.log.commit import Change, commit
from agents.log.port import Appended
from dtf_core import scheduling
from dtf_core.events.task import TaskSubmitted, with_submission


async def commit_with_lease(scheduler: SchedulerAgent,
                            changes: list[Change]) -> list[Appended | None] | None:
    """``changes`` (a submission) committed with each task that a round of ``scheduler``
    now would lease at once written as its lease carrying its submission: when it leads,
    no round runs and nothing else waits in its queue. Each such message keeps its
    submission's check (the task has no event yet) and message id; the other changes go
    as they are. None when no task would be leased: the api commits as usual and hands
    the tasks over."""
    submitted = {i: ev for i, c in enumerate(changes)
                 if len(c.events) == 1 and isinstance(ev := c.events[0], TaskSubmitted)}
    if not submitted:
        return None  # most commits: checked first, without encoding anything
    if (not scheduler.leads() or scheduler.placing.locked() or len(scheduler.ready_q)
            or scheduler.parked):
        return None
    leases = scheduling.leases_new(submitted.values(), scheduler.board,
                                   now=scheduler.clock(), actor=scheduler.actor,
                                   quotas=scheduler.quotas, policy=scheduler.policy)
    if not leases:
        return None
    both = list(changes)
    joined = [i for i, ev in submitted.items() if ev.task_id in leases]
    for i in joined:
        ev, change = submitted[i], changes[i]
        both[i] = Change([with_submission(leases[ev.task_id], ev)], change.expect_seq,
                         change.expect_filter)
    async with scheduler.placing:  # no round decides on the same free slots meanwhile
        results = await commit(scheduler.log, scheduler.board, both, scheduler.folder.own)
    made = sum(1 for i in joined if (seqs := results[i]) is not None and not seqs.duplicates)
    scheduler.leases_tried += len(leases)
    scheduler.leases_with_submission += made
    scheduler.leases_made += made
    return results
