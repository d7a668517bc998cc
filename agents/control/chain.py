"""A one-task submission committed with its lease chained right behind it (ADR 0016),
for the api of a control plane whose scheduler would lease the task at once."""

from __future__ import annotations

from agents.control.scheduler import SchedulerAgent
from agents.log.commit import Change, commit_chained
from agents.log.port import Appended
from dtf_core import scheduling
from dtf_core.events.task import TaskSubmitted


async def commit_with_lease(scheduler: SchedulerAgent,
                            changes: list[Change]) -> list[Appended | None] | None:
    """``changes`` (the submission of one task) committed with the task's lease right
    behind, when a round of ``scheduler`` now would lease it at once: it leads, no round
    runs and nothing else waits in its queue. None when not: the api commits as usual
    and hands the task over."""
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
    async with scheduler.placing:  # no round decides on the same free slots meanwhile
        results, chained = await commit_chained(scheduler.log, scheduler.board, changes,
                                                lease)
    made = chained is not None and not chained.duplicates
    scheduler.leases_tried += 1
    scheduler.leases_chained += made
    scheduler.leases_made += made
    return results
