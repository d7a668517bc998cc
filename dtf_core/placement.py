"""Placement: match queued tasks to workers with free slots. Pure, so it can be replayed.

The core policy is priority order (higher first, then submission order) onto the
least-loaded matching worker. Every lease records why it went where it went.
"""

from __future__ import annotations

from collections.abc import Iterable

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


class Decision(Struct, frozen=True, kw_only=True):
    task_id: str
    worker_id: str
    session: str
    why: Placement


def mismatch(req: Requirements, caps: Capabilities) -> str | None:
    """Why a worker cannot run a task with these requirements, or None if it can."""
    missing = [h for h in req.hardware
               if h not in caps.hardware and h not in caps.tags and h not in caps.cpu_flags]
    if missing:
        return f"lacks hardware {','.join(missing)}"
    if req.worker_group is not None and caps.group != req.worker_group:
        return f"is in group {caps.group or '(none)'!r}, needs {req.worker_group!r}"
    if req.min_memory_gb and caps.memory_gb < req.min_memory_gb:
        return f"has {caps.memory_gb:.1f} GB memory, needs {req.min_memory_gb:g}"
    if req.min_cuda_compute is not None and (
        caps.cuda_compute is None or caps.cuda_compute < req.min_cuda_compute
    ):
        have = "no CUDA" if caps.cuda_compute is None else f"CUDA {caps.cuda_compute:g}"
        return f"has {have}, needs CUDA compute {req.min_cuda_compute:g}"
    return None


def _score(slot: Slot, req: Requirements) -> float:
    """Least loaded first."""
    return slot.free / slot.slots


def _must_avoid(req: Requirements, slots: list[Slot]) -> frozenset[str]:
    """The workers a rerun avoids: its earlier ones, as long as another worker (free or
    busy) can run it; with none, it may go back to them rather than wait forever."""
    if not req.avoid_workers:
        return frozenset()
    needs = (req.hardware or req.min_memory_gb or req.min_cuda_compute
             or req.worker_group is not None)
    others = any(s.worker_id not in req.avoid_workers
                 and (not needs or mismatch(req, s.capabilities) is None) for s in slots)
    return frozenset(req.avoid_workers) if others else frozenset()


def place(
    queued: Iterable[tuple[str, Requirements]], slots: list[Slot]
) -> list[Decision]:
    """Place tasks (already in priority order) while any slot is free.

    ``slots`` is updated in place (free counts go down) so a caller can keep placing.
    """
    decisions: list[Decision] = []
    open_slots = [s for s in slots if s.free > 0]
    if not open_slots:
        return decisions
    for task_id, req in queued:
        best: Slot | None = None
        filtered: dict[str, str] = {}
        avoid = _must_avoid(req, slots)
        for slot in open_slots:
            if slot.free <= 0:
                continue
            if slot.worker_id in avoid:
                filtered[slot.worker_id] = "ran this task before (a rerun goes elsewhere)"
                continue
            why_not = mismatch(req, slot.capabilities) if (
                req.hardware or req.min_memory_gb or req.min_cuda_compute
                or req.worker_group is not None) else None
            if why_not is not None:
                filtered[slot.worker_id] = why_not
            elif best is None or _score(slot, req) > _score(best, req):
                best = slot
        if best is None:
            continue
        best.free -= 1
        decisions.append(
            Decision(
                task_id=task_id,
                worker_id=best.worker_id,
                session=best.session,
                why=Placement(
                    candidates=len(open_slots) - len(filtered),
                    filtered=filtered,
                    scores={best.worker_id: round(best.free / best.slots, 4)},
                ),
            )
        )
        if best.free == 0:
            open_slots = [s for s in open_slots if s.free > 0]
            if not open_slots:
                break
    return decisions
