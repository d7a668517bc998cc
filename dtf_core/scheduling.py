"""The scheduler's rules, pure: given the fold, the ready queue and the time, which slots
are free, which queued tasks may run now, which leases to write or steal, and which long
waits to explain. The scheduler agent folds, calls these and commits what they return.

A decision is ``(task id, events)``: the events of one task, to append together.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Protocol

from dtf_core import task as task_agg
from dtf_core.events.task import TaskEvent, TaskLeased, TaskSubmitted
from dtf_core.explain import waiting_reason
from dtf_core.placement import Decision, Slot, place, refusing
from dtf_core.policy import Policy
from dtf_core.queue import ReadyQueue
from dtf_core.spec import all_dependencies
from dtf_core.task import TaskState
from dtf_core.task_state import evolve
from dtf_core.worker import WorkerState

SCAN_LIMIT = 20_000  # queued tasks examined per round at most
Decided = tuple[str, list[TaskEvent]]


class Fold(Protocol):
    """What the rules read of an agent's board (``projections.board.Board``)."""

    @property
    def tasks(self) -> Mapping[str, TaskState]: ...
    @property
    def workers(self) -> Mapping[str, WorkerState]: ...
    @property
    def leases_by_worker(self) -> Mapping[str, Set[str]]: ...
    def task_or_tombstone(self, task_id: str) -> TaskState | None: ...


def live_leases(fold: Fold) -> Iterable[TaskState]:
    for ids in fold.leases_by_worker.values():
        for task_id in ids:
            yield fold.tasks[task_id]


def slots(fold: Fold) -> list[Slot]:
    """Every alive worker with what it has free. Busy workers too (free 0): placement asks
    whether any live worker could run a task before sending a rerun back to one it avoids.
    A cordoned or draining worker has no free slot."""
    out = []
    for w in fold.workers.values():
        if w.status != "alive":
            continue
        live = [fold.tasks[t].spec.requirements for t in fold.leases_by_worker.get(w.worker_id, ())]
        free = w.slots - len(live) if w.scheduling == "open" else 0
        if any(r.exclusive for r in live):
            free = 0  # an exclusive task (a benchmark) has the worker to itself
        out.append(Slot(
            worker_id=w.worker_id, session=w.session, capabilities=w.capabilities,
            free=max(free, 0), slots=w.slots,
            free_memory_gb=w.capabilities.memory_gb - sum(r.min_memory_gb for r in live),
            free_gpus=len(w.capabilities.gpus) - sum(r.gpus for r in live)))
    return out


def load_by(fold: Fold, group: Callable[[TaskState], str]) -> dict[str, int]:
    """Live leases per group (a fair-share group, an owner)."""
    load: dict[str, int] = {}
    for t in live_leases(fold):
        key = group(t)
        load[key] = load.get(key, 0) + 1
    return load


@dataclass(frozen=True)
class Waits:
    """The task waits for this dependency to end."""

    on: str


def dependency_check(t: TaskState, fold: Fold, *, now: float,
                     actor: str) -> Waits | list[TaskEvent] | None:
    """None when every dependency lets ``t`` run; ``Waits`` while one has not ended; the
    events that end ``t`` when a hard dependency ended without success (possibly none, when
    that was written already)."""
    soft = set(t.spec.soft_dependencies)
    for dep_id in all_dependencies(t.spec):
        dep = fold.task_or_tombstone(dep_id)
        if dep is None or not dep.terminal:
            return Waits(dep_id)
        if dep.status != "succeeded" and dep_id not in soft:
            return task_agg.decide_dependency_failed(t, dep, now=now, actor=actor)
    return None


@dataclass
class Picked:
    """A round's candidates, in the policy's order, and what the picking decided."""

    tasks: list[TaskState] = field(default_factory=list)
    parked: list[TaskState] = field(default_factory=list)  # owners at their quota
    decided: list[Decided] = field(default_factory=list)  # tasks failed by a dependency


def pick(queue: ReadyQueue, fold: Fold, free: int, *, now: float, actor: str,
         quotas: Mapping[str, int], policy: Policy) -> Picked:
    """Take up to ``free`` runnable tasks off ``queue``: the not yet due go back delayed,
    those with unfinished dependencies wait on them, those over their owner's quota are
    parked, and those whose dependency failed are decided."""
    out = Picked()
    examined = 0
    load = load_by(fold, policy.share_key)
    owners = load_by(fold, lambda t: t.owner) if quotas else {}
    while len(out.tasks) < free and examined < SCAN_LIMIT:
        task_id = queue.pop(load)
        if task_id is None:
            break
        examined += 1
        t = fold.tasks.get(task_id)
        if t is None or t.status != "queued" or t.cancel_requested:
            continue
        if t.not_before > now:
            queue.delay(task_id, t.not_before)
            continue
        verdict = dependency_check(t, fold, now=now, actor=actor)
        if isinstance(verdict, Waits):
            queue.wait_for(verdict.on, task_id)
            continue
        if verdict is not None:
            if verdict:
                out.decided.append((task_id, verdict))
            continue
        quota = quotas.get(t.owner)
        if quota is not None and owners.get(t.owner, 0) >= quota:
            out.parked.append(t)
            continue
        owners[t.owner] = owners.get(t.owner, 0) + 1
        out.tasks.append(t)
    return out


def leases(decisions: Iterable[Decision], fold: Fold, *, now: float, actor: str) -> list[Decided]:
    return [(d.task_id, [task_agg.decide_lease(fold.tasks[d.task_id], worker_id=d.worker_id,
                                               session=d.session, now=now, actor=actor,
                                               why=d.why)])
            for d in decisions]


def steals(fold: Fold, free_slots: list[Slot], *, now: float, steal_after: float,
           actor: str, policy: Policy) -> list[Decided]:
    """Idle slots and nothing queued: move leases that have sat unstarted on another
    worker for ``steal_after`` seconds (a stalled or overloaded worker) to idle ones."""
    stale = [t for t in live_leases(fold)
             if t.status == "leased" and now - (t.leased_at or now) >= steal_after]
    if not stale:
        return []
    out: list[Decided] = []
    types = {t.task_id: t.spec.type for t in stale} if refusing(free_slots) else None
    for d in place(((t.task_id, t.spec.requirements) for t in stale), free_slots,
                   score=policy.score, policy=policy.name, types=types):
        events = task_agg.decide_steal(fold.tasks[d.task_id], worker_id=d.worker_id,
                                       session=d.session, now=now, actor=actor, why=d.why)
        if events:
            out.append((d.task_id, events))
    return out


def explain_waits(fold: Fold, *, now: float, waiting_after: float, skip: Set[str],
                  limit: int, actor: str) -> list[Decided]:
    """Why tasks queued longer than ``waiting_after`` still wait, at most ``limit``, each
    only when its reason changed since the last explanation."""
    leases_held = {w: len(ids) for w, ids in fold.leases_by_worker.items()}
    out: list[Decided] = []
    for t in fold.tasks.values():
        if len(out) >= limit:
            break
        if t.status != "queued" or now - t.submitted_at < waiting_after or t.task_id in skip:
            continue
        deps = {d: fold.tasks.get(d) for d in all_dependencies(t.spec)}
        reason, detail = waiting_reason(t, fold.workers, leases_held, deps, now)
        events = task_agg.decide_waiting(t, reason, detail, now=now, actor=actor)
        if events:
            out.append((t.task_id, events))
    return out


def missed_deadlines(queue: ReadyQueue, fold: Fold, *, now: float, actor: str) -> list[Decided]:
    out: list[Decided] = []
    for task_id in queue.deadlines_passed(now):
        t = fold.tasks.get(task_id)
        if t is not None:
            events = task_agg.decide_deadline(t, now=now, actor=actor)
            if events:
                out.append((task_id, events))
    return out


class _WithNew:
    """``fold`` and tasks submitted but not folded yet (as their first events leave them)."""

    def __init__(self, fold: Fold, new: Mapping[str, TaskState]) -> None:
        self.fold = fold
        self.new = new
        self.tasks: Mapping[str, TaskState] = ChainMap(new, fold.tasks)  # type: ignore[arg-type]
        self.workers = fold.workers
        self.leases_by_worker = fold.leases_by_worker

    def task_or_tombstone(self, task_id: str) -> TaskState | None:
        new = self.new.get(task_id)
        return new if new is not None else self.fold.task_or_tombstone(task_id)


def leases_new(submitted: Iterable[TaskSubmitted], fold: Fold, *, now: float, actor: str,
               quotas: Mapping[str, int], policy: Policy) -> dict[str, TaskLeased]:
    """The leases a round would write at once for tasks just submitted, were they the only
    tasks queued (the caller makes sure they are), by task: one left out is one the round
    would not lease now (a delay, a dependency, a deadline passed, its owner's quota, no
    free slot that fits). The submissions need not be folded yet (ADR 0018)."""
    new = {ev.task_id: evolve(None, ev, 0) for ev in submitted}
    free_slots = slots(fold)
    free = sum(s.free for s in free_slots)
    if not free or not new:
        return {}
    queue = ReadyQueue(policy)
    for t in new.values():
        if t.spec.deadline is None or t.spec.deadline > now:  # else the round fails it
            queue.push(t)
    view = _WithNew(fold, new)
    picked = pick(queue, view, free, now=now, actor=actor, quotas=quotas, policy=policy)
    if not picked.tasks:
        return {}
    types = {t.task_id: t.spec.type for t in picked.tasks} if refusing(free_slots) else None
    decisions = place(((t.task_id, t.spec.requirements) for t in picked.tasks), free_slots,
                      score=policy.score, policy=policy.name, types=types)
    return {d.task_id: task_agg.decide_lease(new[d.task_id], worker_id=d.worker_id,
                                             session=d.session, now=now, actor=actor, why=d.why)
            for d in decisions}
