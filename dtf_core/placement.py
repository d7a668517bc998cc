"""Placement: match queued tasks to workers with free slots. Pure, so it can be replayed.

The core policy is priority order (higher first, then submission order) onto the
least-loaded matching worker. Every lease records why it went where it went.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from msgspec import Struct

from dtf_core.events.task import Placement
from dtf_core.events.worker import Capabilities
from dtf_core.spec import Requirements


class Slot(Struct, kw_only=True):
    """A worker as placement sees it: what it has and how many slots are free."""

    worker_id: str
    session: str
    capabilities: Capabilities
    free: int
    slots: int
    # Not yet reserved by live leases (None: the capacity, nothing reserved).
    free_memory_gb: float | None = None
    free_gpus: int | None = None

    def fits(self, req: Requirements) -> bool:
        """Room for the task's reservations (memory and GPUs) beside the live leases."""
        memory = self.capabilities.memory_gb if self.free_memory_gb is None \
            else self.free_memory_gb
        gpus = len(self.capabilities.gpus) if self.free_gpus is None else self.free_gpus
        if req.exclusive and self.free < self.slots:
            return False  # an exclusive task waits for the worker to be idle
        return (not req.min_memory_gb or memory >= req.min_memory_gb) and gpus >= req.gpus

    def reserve(self, req: Requirements) -> None:
        self.free = 0 if req.exclusive else self.free - 1
        if req.min_memory_gb:
            base = self.capabilities.memory_gb if self.free_memory_gb is None \
                else self.free_memory_gb
            self.free_memory_gb = base - req.min_memory_gb
        if req.gpus:
            base_gpus = len(self.capabilities.gpus) if self.free_gpus is None else self.free_gpus
            self.free_gpus = base_gpus - req.gpus


class Decision(Struct, frozen=True, kw_only=True):
    task_id: str
    worker_id: str
    session: str
    why: Placement


def mismatch(req: Requirements, caps: Capabilities, task_type: str = "") -> str | None:
    """Why a worker cannot run a task with these requirements (and of ``task_type``, when
    given), or None if it can."""
    refused = caps.refuses(task_type) if task_type and caps.unsupported else None
    if refused is not None:
        return f"does not run {task_type} tasks: {refused}"
    missing = [h for h in req.hardware
               if h not in caps.hardware and h not in caps.tags and h not in caps.cpu_flags]
    if missing:
        return f"lacks hardware {','.join(missing)}"
    if req.worker_group is not None and caps.group != req.worker_group:
        return f"is in group {caps.group or '(none)'!r}, needs {req.worker_group!r}"
    if req.min_memory_gb and caps.memory_gb < req.min_memory_gb:
        return f"has {caps.memory_gb:.1f} GB memory, needs {req.min_memory_gb:g}"
    if req.gpus and len(caps.gpus) < req.gpus:
        return f"has {len(caps.gpus)} GPUs, needs {req.gpus}"
    if req.fingerprint and caps.fingerprint != req.fingerprint:
        return f"its hardware fingerprint is not {req.fingerprint}"
    if req.min_cuda_compute is not None and (
        caps.cuda_compute is None or caps.cuda_compute < req.min_cuda_compute
    ):
        have = "no CUDA" if caps.cuda_compute is None else f"CUDA {caps.cuda_compute:g}"
        return f"has {have}, needs CUDA compute {req.min_cuda_compute:g}"
    return None


def _score(slot: Slot, req: Requirements) -> float:
    """Least loaded first."""
    return slot.free / slot.slots


def _must_avoid(req: Requirements, slots: list[Slot], kind: str = "") -> frozenset[str]:
    """The workers a rerun avoids: its earlier ones, as long as another worker (free or
    busy) can run it; with none, it may go back to them rather than wait forever."""
    if not req.avoid_workers:
        return frozenset()
    needs = (req.hardware or req.min_memory_gb or req.min_cuda_compute
             or req.worker_group is not None or kind)
    others = any(s.worker_id not in req.avoid_workers
                 and (not needs or mismatch(req, s.capabilities, kind) is None) for s in slots)
    return frozenset(req.avoid_workers) if others else frozenset()


MAX_FILTERED_NAMED = 16  # a lease names this many ruled-out workers, and counts the rest


@dataclass
class _Candidates:
    """The workers that can take tasks with one set of requirements, best score first
    (a heap, refreshed lazily: only the chosen slot's score changes per decision)."""

    heap: list[tuple[float, int]]
    filtered: dict[str, str]
    others_filtered: int
    eligible: int


def _candidates(req: Requirements, open_slots: list[Slot], all_slots: list[Slot],
                score: Callable[[Slot, Requirements], float], kind: str = "") -> _Candidates:
    """``kind``: the tasks' type, given when a worker refuses some type (else "")."""
    avoid = _must_avoid(req, all_slots, kind)
    constrained = (req.hardware or req.min_memory_gb or req.min_cuda_compute
                   or req.worker_group is not None or req.gpus or req.fingerprint or kind)
    heap: list[tuple[float, int]] = []
    filtered: dict[str, str] = {}
    others = 0
    for i, slot in enumerate(open_slots):
        if slot.worker_id in avoid:
            why_not: str | None = "ran this task before (a rerun goes elsewhere)"
        else:
            why_not = mismatch(req, slot.capabilities, kind) if constrained else None
        if why_not is None:
            heap.append((-score(slot, req), i))
        elif len(filtered) < MAX_FILTERED_NAMED:
            filtered[slot.worker_id] = why_not
        else:
            others += 1
    heapq.heapify(heap)
    return _Candidates(heap, filtered, others, len(heap))


def place(
    queued: Iterable[tuple[str, Requirements]], slots: list[Slot], *,
    score: Callable[[Slot, Requirements], float] | None = None, policy: str = "default",
    types: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Place tasks (already in queue order) while any slot is free: each on the eligible
    worker the policy scores highest (ties: the first in ``slots``). ``types``: each
    task's type by id, for the workers that do not run some type (``refusing``).

    ``slots`` is updated in place (free counts go down) so a caller can keep placing.
    Tasks with equal requirements share one candidate heap, so a placement costs
    O(log workers), not O(workers).
    """
    score = score or _score
    decisions: list[Decision] = []
    open_slots = [s for s in slots if s.free > 0]
    free = sum(s.free for s in open_slots)
    by_req: dict[tuple[Requirements, str], _Candidates] = {}
    kinds = types if types is not None and refusing(open_slots) else None
    for task_id, req in queued:
        if free <= 0:
            break
        kind = kinds.get(task_id, "") if kinds is not None else ""
        cands = by_req.get((req, kind))
        if cands is None:
            cands = by_req[req, kind] = _candidates(req, open_slots, slots, score, kind)
        best: Slot | None = None
        heap = cands.heap
        while heap:
            neg, i = heap[0]
            slot = open_slots[i]
            if slot.free <= 0 or not slot.fits(req):  # reservations only shrink in a round
                heapq.heappop(heap)
                cands.eligible -= 1
                continue
            current = -score(slot, req)
            if current != neg:
                heapq.heapreplace(heap, (current, i))
                continue
            best = slot
            break
        if best is None:
            continue
        best.reserve(req)
        free -= 1
        decisions.append(
            Decision(
                task_id=task_id,
                worker_id=best.worker_id,
                session=best.session,
                why=Placement(
                    candidates=cands.eligible,
                    filtered=cands.filtered,
                    others_filtered=cands.others_filtered,
                    scores={best.worker_id: round(score(best, req), 4)},
                    policy=policy,
                ),
            )
        )
    return decisions


def refusing(slots: Iterable[Slot]) -> bool:
    """Whether any of ``slots`` does not run some task type (``place`` then needs the
    tasks' types)."""
    return any(s.capabilities.unsupported for s in slots)


def overcommit(running: list[Requirements], req: Requirements, slots: int,
               caps: Capabilities) -> str:
    """Why one more task with ``req`` beside ``running`` would overcommit a worker ("" when
    it fits): its slots, and the memory and GPUs the leases reserve."""
    if len(running) >= slots:
        return f"all {slots} slots are busy"
    if req.exclusive and running:
        return f"it needs the worker to itself and {len(running)} tasks run here"
    if any(r.exclusive for r in running):
        return "an exclusive task (a benchmark) runs here"
    memory = sum(r.min_memory_gb for r in running) + req.min_memory_gb
    if req.min_memory_gb and memory > caps.memory_gb:
        return f"{memory:g} GB reserved would exceed its {caps.memory_gb:g} GB"
    gpus = sum(r.gpus for r in running) + req.gpus
    if req.gpus and gpus > len(caps.gpus):
        return f"{gpus} GPUs reserved would exceed its {len(caps.gpus)}"
    return ""
