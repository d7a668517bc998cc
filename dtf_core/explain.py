"""`dtf explain`: in plain words, why a task waits or why it went where it went.

A pure function of folded state (the task, its last lease, the workers, its dependencies),
so the same words come out of a replay as out of the live system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dtf_core.events.scale import ScaleDone, ScaleEvent, ScaleRequested
from dtf_core.events.task import TaskLeased
from dtf_core.placement import mismatch
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState


def _ago(now: float, at: float) -> str:
    s = max(0.0, now - at)
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.0f}m"


def placement_lines(lease: TaskLeased) -> list[str]:
    lines = [f"Attempt {lease.attempt} was placed on worker {lease.worker_id}."]
    why = lease.why
    if why is None:
        return lines
    ruled_out = len(why.filtered) + why.others_filtered
    lines.append(f"Policy {why.policy!r}: {why.candidates} worker(s) could take it"
                 + (f"; {ruled_out} were ruled out:" if ruled_out else "."))
    for worker, reason in sorted(why.filtered.items()):
        lines.append(f"  - {worker} {reason}")
    if why.others_filtered:
        lines.append(f"  - and {why.others_filtered} more")
    if why.scores:
        best = ", ".join(f"{w} {s:g}" for w, s in sorted(why.scores.items()))
        lines.append(f"Chosen by the policy's score: {best}.")
    return lines


def explain(task: TaskState, lease: TaskLeased | None, workers: Mapping[str, WorkerState],
            leases: Mapping[str, int], deps: Mapping[str, TaskState | None],
            queued_ahead: int, now: float) -> list[str]:
    """The lines `dtf explain` prints. ``leases``: live leases per worker; ``deps``: the
    state of each dependency (None: unknown); ``queued_ahead``: queued tasks placed first."""
    head = f"Task {task.task_id} is {task.status}"
    if task.terminal:
        out = [f"{head}" + (f": {task.error}" if task.error else "") + "."]
        return out + (placement_lines(lease) if lease is not None else [])
    if task.status in ("leased", "running"):
        out = [f"{head} on worker {task.worker_id} (attempt {task.attempt})."]
        return out + (placement_lines(lease) if lease is not None else [])
    out = [f"{head}, waiting {_ago(now, task.submitted_at)} since it was submitted."]
    deadline = task.spec.deadline
    if deadline is not None:
        out.append(f"It missed its deadline by {now - deadline:.1f}s (flagged)." if now > deadline
                   else f"Its deadline is in {deadline - now:.1f}s (earliest deadline first).")
    if task.cancel_requested:
        return [*out, "A cancel was requested; it ends at the next scheduling round."]
    if task.not_before > now:
        out.append(f"It waits for its retry back-off: {task.not_before - now:.1f}s more "
                   f"(after {task.failures} failed attempt(s)).")
    pending = [(d, s) for d, s in deps.items() if s is None or not s.terminal]
    for dep_id, dep in pending:
        out.append(f"It waits for dependency {dep_id} ({dep.status if dep else 'unknown'}).")
    req = task.spec.requirements
    alive = [w for w in workers.values() if w.status == "alive"]
    if not alive:
        return [*out, "No worker is alive: start one with `dtf worker` (or `dtf up`)."]
    fits: list[str] = []
    busy: list[str] = []
    for w in sorted(alive, key=lambda w: w.worker_id):
        reason = mismatch(req, w.capabilities, task.spec.type)
        if reason is None and w.scheduling != "open":
            reason = f"is {w.scheduling}"
        if reason is not None:
            out.append(f"  - {w.worker_id} {reason}")
            continue
        used = leases.get(w.worker_id, 0)
        (fits if used < w.slots else busy).append(f"{w.worker_id} ({used}/{w.slots} slots)")
    if not fits and not busy:
        out.insert(1, "No live worker meets its requirements:")
        return out
    if pending or task.not_before > now:
        return out
    if fits:
        out.append(f"Workers with free slots that can run it: {', '.join(fits)}; "
                   f"{queued_ahead} queued task(s) go first (priority {task.spec.priority}).")
    else:
        out.append(f"Every worker that can run it is full: {', '.join(busy)}; "
                   f"{queued_ahead} queued task(s) are ahead of it.")
    return out


def waiting_reason(task: TaskState, workers: Mapping[str, WorkerState],
                   leases: Mapping[str, int], deps: Mapping[str, TaskState | None],
                   now: float) -> tuple[str, str]:
    """The one main reason a queued task waits, as a short code and a sentence."""
    if task.not_before > now:
        return "backoff", f"retry back-off until {task.not_before:.0f}"
    pending = [d for d, s in deps.items() if s is None or not s.terminal]
    if pending:
        return "dependencies", "waits for " + ", ".join(sorted(pending)[:5])
    alive = [w for w in workers.values() if w.status == "alive"]
    if not alive:
        return "no_worker", "no worker is alive"
    usable = [w for w in alive
              if mismatch(task.spec.requirements, w.capabilities, task.spec.type) is None]
    if not usable:
        return "no_match", "no live worker meets its requirements"
    open_ = [w for w in usable if w.scheduling == "open"]
    if not open_:
        return "cordoned", "every worker that can run it is cordoned or draining"
    if all(leases.get(w.worker_id, 0) >= w.slots for w in open_):
        return "full", "every worker that can run it is full"
    return "queued", "other tasks go first (priority, deadline, fair share or quota)"


def scaling_lines(scaling: Mapping[str, Sequence[ScaleEvent]], *, since: float, until: float,
                  now: float, queued: bool) -> list[str]:
    """What the autoscaler decided while a task waited (from ``since`` to ``until``), each
    decision with its reason and outcome; for a task still queued, at least the newest."""
    out: list[str] = []
    for group, events in sorted(scaling.items()):
        done = {e.decision: e for e in events if isinstance(e, ScaleDone)}
        asked = [e for e in events if isinstance(e, ScaleRequested)]
        shown = [e for e in asked if since <= e.at <= until][-3:]
        if not shown and queued and asked:
            shown = asked[-1:]
        for e in shown:
            line = (f"The autoscaler of group {group!r} scaled {e.direction} from {e.current} "
                    f"to {e.target} worker(s) {_ago(now, e.at)} ago: {e.reason}")
            outcome = done.get(e.decision)
            if outcome is None:
                line += " (in progress)."
            else:
                line += (f"; {outcome.reason}." if outcome.ok
                         else f"; it failed: {outcome.reason}.")
            out.append(line)
    return out
