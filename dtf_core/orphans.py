"""Recovery's rules, pure: which workers fell silent, and which live leases no worker
holds any more. Recovery keeps the heartbeat table and commits what these return.

A decision is ``(aggregate id, events)``: the events of one worker or one task.
"""

from __future__ import annotations

from collections.abc import Callable

from dtf_core import task as task_agg
from dtf_core import worker as worker_agg
from dtf_core.events.task import TaskEvent
from dtf_core.events.worker import WorkerEvent
from dtf_core.scheduling import Fold
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState


def silent_workers(fold: Fold, silent_for: Callable[[WorkerState], float], *,
                   deadline: Callable[[WorkerState], float], now: float,
                   actor: str) -> list[tuple[str, list[WorkerEvent]]]:
    """Alive workers not heard from for longer than their ``deadline`` become lost."""
    out = []
    for w in fold.workers.values():
        if w.status != "alive":
            continue
        silence = silent_for(w)
        if silence > deadline(w):
            events = worker_agg.decide_lost(
                w, session=w.session, last_seen=now - silence, now=now, actor=actor,
                reason=f"no heartbeat for {silence:.1f}s")
            if events:
                out.append((w.worker_id, events))
    return out


def orphaned_leases(fold: Fold, unheld: Callable[[TaskState], bool], *, now: float,
                    actor: str) -> list[tuple[str, list[TaskEvent]]]:
    """Live leases whose worker is lost or stopped, restarted (a new session), or alive
    but not holding the lease (``unheld``: its heartbeats have not listed it for a grace
    period). Each requeues the task without spending its retries; each but a clean stop
    counts as a lost worker, and a task that loses too many fails."""
    out = []
    for worker_id, task_ids in fold.leases_by_worker.items():
        holder = fold.workers.get(worker_id)
        for task_id in task_ids:
            t = fold.tasks[task_id]
            alive = holder is not None and holder.status == "alive"
            if alive and holder is not None and t.session == holder.session:
                if not unheld(t):
                    continue
                reason = (f"worker {worker_id} does not hold the lease (it never got it, "
                          "or lost the attempt)")
                events = task_agg.decide_lease_lost(t, reason=reason, now=now, actor=actor)
            else:
                if alive:
                    reason, clean = f"worker {worker_id} restarted", False
                elif holder is not None and holder.status == "stopped" and \
                        t.session == holder.session:
                    reason, clean = f"worker {worker_id} stopped", True
                else:
                    reason, clean = f"worker {worker_id} lost", False
                events = task_agg.decide_lease_lost(t, reason=reason, now=now, actor=actor,
                                                    clean_stop=clean)
            if events:
                out.append((task_id, events))
    return out
