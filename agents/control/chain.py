"""A one-task submission written with its lease as one message (ADR 0018), for the api of
a control plane whose scheduler would lease the task at once."""

from __future__ import annotations

from agents.control.scheduler import SchedulerAgent
from agents.log.commit import Change, commit
from agents.log.port import Appended
from dtf_core import scheduling
from dtf_core.events.task import TaskSubmitted, with_submission


async def commit_with_lease(scheduler: SchedulerAgent,
                            changes: list[Change]) -> list[Appended | None] | None:
    """``changes`` (the submission of one task) committed as the task's lease that is also
    its submission, when a round of ``scheduler`` now would lease it at once: it leads, no
    round runs and nothing else waits in its queue. The message keeps the submission's
    check (the task has no event yet) and message id. None when not: the api commits as
    usual and hands the task over."""
    if len(changes) != 1 or len(changes[0].events) != 1 or not isinstance(
            ev := changes[0].events[0], TaskSubmitted):
        return None  # most commits: checked first, without encoding anything
    if (not scheduler.leads() or scheduler.placing.locked() or len(scheduler.ready_q)
            or scheduler.parked):
        return None
    lease = scheduling.lease_new(ev, scheduler.board, now=scheduler.clock(),
                                 actor=scheduler.actor, quotas=scheduler.quotas,
                                 policy=scheduler.policy)
    if lease is None:
        return None
    [change] = changes
    both = Change([with_submission(lease, ev)], change.expect_seq, change.expect_filter)
    async with scheduler.placing:  # no round decides on the same free slots meanwhile
        results = await commit(scheduler.log, scheduler.board, [both])
    made = results[0] is not None and not results[0].duplicates
    scheduler.leases_tried += 1
    scheduler.leases_with_submission += made
    scheduler.leases_made += made
    return results
