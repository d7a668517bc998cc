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
    submitted = [ev for c in changes if len(c.events) == 1
                 and isinstance(ev := c.events[0], TaskSubmitted)]
    if not submitted:
        return None  # most commits: checked first, without encoding anything
    if (not scheduler.leads() or scheduler.placing.locked() or len(scheduler.ready_q)
            or scheduler.parked):
        return None
    leases = scheduling.leases_new(submitted, scheduler.board, now=scheduler.clock(),
                                   actor=scheduler.actor, quotas=scheduler.quotas,
                                   policy=scheduler.policy)
    if not leases:
        return None
    both: list[Change] = []
    joined: list[int] = []  # where both has a lease carrying its submission
    for i, change in enumerate(changes):
        if (len(change.events) == 1 and isinstance(ev := change.events[0], TaskSubmitted)
                and (lease := leases.get(ev.task_id)) is not None):
            joined.append(i)
            change = Change([with_submission(lease, ev)], change.expect_seq,
                            change.expect_filter)
        both.append(change)
    async with scheduler.placing:  # no round decides on the same free slots meanwhile
        results = await commit(scheduler.log, scheduler.board, both)
    made = sum(1 for i in joined if (seqs := results[i]) is not None and not seqs.duplicates)
    scheduler.leases_tried += len(leases)
    scheduler.leases_with_submission += made
    scheduler.leases_made += made
    return results
