"""When a scheduler looks again, and which news wakes it (ADR 0021).

A round places queued tasks. With nothing queued and nothing parked, it can only find
what time brings: a delayed task or a deadline, queued tasks whose long waits to explain,
and leases that sat unstarted long enough to be stolen. So the scheduler sleeps until the
first of those, and news wakes it only when a round could act on it: something queued or
parked, a new lease that becomes stealable before that time, or a stealable lease that
found no idle slot (any news may free one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dtf_core.events.codec import Event
from dtf_core.events.task import TaskLeased
from dtf_core.queue import ReadyQueue
from dtf_core.scheduling import Fold, live_leases


@dataclass
class Looks:
    steal_after: float | None  # seconds a lease may sit unstarted before a steal
    waiting_after: float | None  # seconds queued before a wait is explained
    at: float | None = 0.0  # the next look without news (clock time); None: none due
    overdue: bool = False  # a stealable lease found no idle slot
    # when the oldest unstarted lease may be stolen, as last found: a lower bound until
    # then (that lease may start or end, and a new lease comes later), so the leases are
    # scanned again only once it has passed or when none was found
    due: float | None = None

    def plan(self, queue: ReadyQueue, fold: Fold, counts: Mapping[str, int],
             now: float) -> float | None:
        """Seconds until the next look without news (None: only news), remembered;
        ``counts``: tasks by status."""
        if not counts.get("leased", 0):
            self.due = None  # no unstarted lease at all
        elif self.due is None or self.due <= now:
            self.due = self.steal_due(fold)
        due = self.due
        self.overdue = due is not None and due <= now
        timeout = next_look(queue, counts.get("queued", 0), now=now,
                            waiting_after=self.waiting_after,
                            steal_after=self.steal_after, steal_due=due)
        self.at = None if timeout is None else now + timeout
        return timeout

    def steal_due(self, fold: Fold) -> float | None:
        """When the oldest unstarted lease may be stolen (None: no such lease)."""
        if self.steal_after is None:
            return None
        oldest = min((t.leased_at for t in live_leases(fold)
                      if t.status == "leased" and t.leased_at is not None), default=None)
        return None if oldest is None else oldest + self.steal_after

    def woken_by(self, events: Sequence[tuple[int, Event]]) -> bool:
        """With nothing queued or parked: may a round act on ``events`` now?"""
        if self.overdue:
            return True
        if self.steal_after is None:
            return False
        return any(isinstance(ev, TaskLeased)
                   and (self.at is None or ev.at + self.steal_after < self.at)
                   for _, ev in events)


def next_look(queue: ReadyQueue, queued: int, *, now: float, waiting_after: float | None,
              steal_after: float | None, steal_due: float | None) -> float | None:
    """Seconds until the next round is due without news: a delayed task or deadline,
    queued tasks whose long waits to explain, the oldest unstarted lease to steal
    (``steal_due``; past due: it found no idle slot, look again ``steal_after`` on)."""
    due = queue.next_due()
    timeout = None if due is None else max(0.0, due - now)
    if waiting_after is not None and queued:
        timeout = min(timeout if timeout is not None else waiting_after, waiting_after / 2)
    if steal_after is not None and steal_due is not None:
        steal = steal_due - now if steal_due > now else steal_after
        timeout = min(timeout if timeout is not None else steal, steal)
    return timeout
