"""Scheduling policies: the plug-in point of placement.

A policy orders the queue (``queue_key``, smallest first), names the fair-share group of a
task (``share_key``: within the best queue class, the group with the fewest live leases
goes next), and scores a worker for a task (``score``, highest wins). Policies are found
by name among the built-ins and the ``dtf.policies`` entry points, so a package can ship
its own. Pure: the same policy over the same log places the same way.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from dtf_core.events.worker import Capabilities
from dtf_core.spec import Requirements
from dtf_core.task import TaskState


class SlotView(Protocol):
    @property
    def worker_id(self) -> str: ...
    @property
    def capabilities(self) -> Capabilities: ...
    @property
    def free(self) -> int: ...
    @property
    def slots(self) -> int: ...


class Policy(Protocol):
    name: str

    def queue_key(self, task: TaskState) -> tuple[Any, ...]: ...

    def share_key(self, task: TaskState) -> str: ...

    def score(self, slot: SlotView, req: Requirements) -> float: ...


class DefaultPolicy:
    """Priority; earliest deadline first within a priority; then submission order. Fair
    share across runs (tasks without a run share one group). Least-loaded worker, with
    hardware affinity: a task that needs no accelerator avoids workers that have one, while
    a plain worker can take it, so GPUs stay free for the tasks that need them."""

    name = "default"

    def queue_key(self, task: TaskState) -> tuple[Any, ...]:
        deadline = task.spec.deadline if task.spec.deadline is not None else math.inf
        return (-task.spec.priority, deadline, task.submitted_at, task.task_id)

    def share_key(self, task: TaskState) -> str:
        return task.run_id or ""

    def score(self, slot: SlotView, req: Requirements) -> float:
        unused = set(slot.capabilities.hardware) - {"cpu"} - set(req.hardware)
        penalty = 1.0 if unused and not req.gpus else 0.0
        return slot.free / slot.slots - penalty


class FifoPolicy:
    """First submitted, first placed; no priorities, no fair share; least-loaded worker."""

    name = "fifo"

    def queue_key(self, task: TaskState) -> tuple[Any, ...]:
        return (0, task.submitted_at, task.task_id)

    def share_key(self, task: TaskState) -> str:
        return ""

    def score(self, slot: SlotView, req: Requirements) -> float:
        return slot.free / slot.slots


BUILTIN: dict[str, type] = {"default": DefaultPolicy, "fifo": FifoPolicy}
