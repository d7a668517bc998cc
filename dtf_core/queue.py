"""The ready queue: queued tasks in a policy's order, with fair share across groups."""

from __future__ import annotations

import heapq
from typing import Any

from dtf_core.policy import DefaultPolicy, Policy
from dtf_core.task import TaskState


class ReadyQueue:
    """Queued tasks in the policy's order, one heap per fair-share group, lazy deletion.

    ``pop`` takes the best head across groups; among groups whose heads are in the same
    queue class (the key's first element, the priority by default), the group with the
    fewest live leases goes first, then the one granted the fewest leases since its backlog
    began (so on a single slot two runs alternate): one huge run cannot starve a small one.
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or DefaultPolicy()
        self._heaps: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
        self._queued: set[str] = set()
        self.delayed: list[tuple[float, str]] = []
        self.deadlines: list[tuple[float, str]] = []
        self.waiting_on: dict[str, set[str]] = {}
        self.granted: dict[str, int] = {}

    def push(self, t: TaskState) -> None:
        if t.task_id in self._queued:
            return
        self._queued.add(t.task_id)
        heap = self._heaps.setdefault(self.policy.share_key(t), [])
        heapq.heappush(heap, (self.policy.queue_key(t), t.task_id))
        if t.spec.deadline is not None and not t.deadline_missed:
            heapq.heappush(self.deadlines, (t.spec.deadline, t.task_id))

    def pop(self, load: dict[str, int] | None = None) -> str | None:
        best: tuple[tuple[Any, ...], str] | None = None  # (rank, share)
        for share, heap in self._heaps.items():
            head = heap[0][0]
            rank = (head[0], (load or {}).get(share, 0), self.granted.get(share, 0), head)
            if best is None or rank < best[0]:
                best = (rank, share)
        if best is None:
            return None
        share = best[1]
        heap = self._heaps[share]
        _, task_id = heapq.heappop(heap)
        self.granted[share] = self.granted.get(share, 0) + 1
        if not heap:
            del self._heaps[share]
            self.granted.pop(share, None)
        self._queued.discard(task_id)
        if load is not None:
            load[share] = load.get(share, 0) + 1
        return task_id

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())

    def delay(self, task_id: str, until: float) -> None:
        """Keep ``task_id`` out of the queue until ``until`` (a retry back-off)."""
        heapq.heappush(self.delayed, (until, task_id))

    def due(self, now: float) -> list[str]:
        """The delayed tasks whose time has come, taken off the delayed heap."""
        out = []
        while self.delayed and self.delayed[0][0] <= now:
            out.append(heapq.heappop(self.delayed)[1])
        return out

    def deadlines_passed(self, now: float) -> list[str]:
        """Tasks whose deadline passed before ``now``, each returned once."""
        out = []
        while self.deadlines and self.deadlines[0][0] < now:
            out.append(heapq.heappop(self.deadlines)[1])
        return out

    def wait_for(self, dependency: str, task_id: str) -> None:
        """``task_id`` comes back when ``dependency`` ends (see ``dependents``)."""
        self.waiting_on.setdefault(dependency, set()).add(task_id)

    def dependents(self, dependency: str) -> set[str]:
        """The tasks that waited for ``dependency``, forgotten here."""
        return self.waiting_on.pop(dependency, set())

    def next_due(self) -> float | None:
        due = [q[0][0] for q in (self.delayed, self.deadlines) if q]
        return min(due) if due else None
