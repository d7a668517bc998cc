"""`dtf simulate`: replay recorded submissions and worker history under another policy.

Each task that ran keeps the service time it really took; workers come and go when they
really did; the policy decides the order and the placement. The result is set side by side
with what the log says happened. Pure: events in, numbers out.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dtf_core.events.codec import Event
from dtf_core.events.task import AttemptOutcome, TaskLeased, TaskSubmitted, submission_in
from dtf_core.events.worker import Capabilities, WorkerLost, WorkerRegistered, WorkerStopped
from dtf_core.placement import Slot, place, refusing
from dtf_core.policy import Policy
from dtf_core.queue import ReadyQueue
from dtf_core.task import TERMINAL, TaskState

TERMINAL_OUTCOMES = TERMINAL


@dataclass
class Job:
    state: TaskState
    service_s: float = 0.0
    first_lease: float | None = None
    finished: float | None = None


@dataclass
class Stats:
    tasks: int
    makespan_s: float
    mean_wait_s: float
    p95_wait_s: float
    fairness: float  # Jain's index over the runs' mean waits: 1 is perfectly even


def _stats(submitted: dict[str, float], started: dict[str, float], finished: dict[str, float],
           runs: dict[str, str]) -> Stats:
    waits = sorted(started[t] - submitted[t] for t in started)
    if not waits:
        return Stats(0, 0.0, 0.0, 0.0, 1.0)
    per_run: dict[str, list[float]] = {}
    for t in started:
        per_run.setdefault(runs.get(t, ""), []).append(started[t] - submitted[t])
    means = [sum(v) / len(v) for v in per_run.values()]
    square = sum(m * m for m in means)
    fairness = (sum(means) ** 2) / (len(means) * square) if square > 0 else 1.0
    return Stats(
        tasks=len(waits),
        makespan_s=round(max(finished.values()) - min(submitted[t] for t in started), 3),
        mean_wait_s=round(sum(waits) / len(waits), 3),
        p95_wait_s=round(waits[min(len(waits) - 1, math.ceil(0.95 * len(waits)) - 1)], 3),
        fairness=round(fairness, 3),
    )


@dataclass
class History:
    jobs: dict[str, Job] = field(default_factory=dict)
    workers: list[tuple[float, str, str, int, Capabilities]] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: Iterable[tuple[int, Event]]) -> History:
        h = cls()
        for _, ev in events:
            submitted = submission_in(ev) if isinstance(ev, TaskLeased) else ev
            if isinstance(submitted, TaskSubmitted):  # a lease may be one too (ADR 0018)
                h.jobs[submitted.task_id] = Job(TaskState(
                    task_id=submitted.task_id, spec=submitted.spec, run_id=submitted.run_id,
                    submitted_at=submitted.at))
            if isinstance(ev, TaskLeased) and ev.task_id in h.jobs:
                job = h.jobs[ev.task_id]
                job.first_lease = job.first_lease if job.first_lease is not None else ev.at
            elif isinstance(ev, AttemptOutcome) and ev.task_id in h.jobs:
                job = h.jobs[ev.task_id]
                job.service_s += ev.duration_s
                if type(ev).__struct_config__.tag in TERMINAL_OUTCOMES:
                    job.finished = ev.at
            elif isinstance(ev, WorkerRegistered):
                h.workers.append((ev.at, "up", ev.worker_id, ev.slots, ev.capabilities))
            elif isinstance(ev, WorkerStopped | WorkerLost):
                h.workers.append((ev.at, "down", ev.worker_id, 0, Capabilities()))
        return h

    def ran(self) -> dict[str, Job]:
        return {t: j for t, j in self.jobs.items()
                if j.first_lease is not None and j.finished is not None}

    def actual(self) -> Stats:
        jobs = self.ran()
        return _stats({t: j.state.submitted_at for t, j in jobs.items()},
                      {t: j.first_lease for t, j in jobs.items() if j.first_lease is not None},
                      {t: j.finished for t, j in jobs.items() if j.finished is not None},
                      {t: j.state.run_id or "" for t, j in jobs.items()})


def simulate(history: History, policy: Policy, extra_workers: int = 0) -> Stats:
    """``extra_workers``: that many more workers, like the first one that registered, there
    from the first submission on ("would 4 more workers have finished it sooner?")."""
    jobs = history.ran()
    # (time, order, kind, payload): submissions, worker changes, completions
    timeline: list[tuple[float, int, str, object]] = []
    n = 0
    for t, job in jobs.items():
        timeline.append((job.state.submitted_at, n, "submit", t))
        n += 1
    for at, kind, wid, slots, caps in history.workers:
        timeline.append((at, n, kind, (wid, slots, caps)))
        n += 1
    if extra_workers > 0 and jobs:
        ups = [(w[3], w[4]) for w in history.workers if w[1] == "up"]
        slots, caps = ups[0] if ups else (1, Capabilities())
        first = min(j.state.submitted_at for j in jobs.values())
        for i in range(extra_workers):
            timeline.append((first, n, "up", (f"sim-extra-{i + 1}", slots, caps)))
            n += 1
    heapq.heapify(timeline)
    queue = ReadyQueue(policy)
    workers: dict[str, Slot] = {}
    running: dict[str, str] = {}  # task -> worker
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    while timeline:
        now = timeline[0][0]
        while timeline and timeline[0][0] == now:
            _, _, kind, payload = heapq.heappop(timeline)
            if kind == "submit":
                queue.push(jobs[payload].state)  # type: ignore[index]
            elif kind == "up":
                wid, slots, caps = payload  # type: ignore[misc]
                workers[wid] = Slot(worker_id=wid, session="sim", capabilities=caps,
                                    free=slots, slots=slots)
            elif kind == "down":
                wid = payload[0]  # type: ignore[index]
                workers.pop(wid, None)
                for t in [t for t, w in running.items() if w == wid]:
                    del running[t]  # lost with its worker: it runs again from the start
                    started.pop(t, None)
                    queue.push(jobs[t].state)
            elif kind == "done":
                done = str(payload)
                holder = running.pop(done, "")
                if not holder:
                    continue  # its worker went away first
                finished[done] = now
                if holder in workers:
                    workers[holder].free += 1
        load: dict[str, int] = {}
        for t in running:
            share = policy.share_key(jobs[t].state)
            load[share] = load.get(share, 0) + 1
        free = sum(s.free for s in workers.values())
        picked: list[TaskState] = []
        while len(picked) < free and (task_id := queue.pop(load)) is not None:
            picked.append(jobs[task_id].state)
        open_ = list(workers.values())
        types = {s.task_id: s.spec.type for s in picked} if refusing(open_) else None
        decisions = place(((s.task_id, s.spec.requirements) for s in picked),
                          open_, score=policy.score, policy=policy.name, types=types)
        placed = {d.task_id for d in decisions}
        for s in picked:
            if s.task_id not in placed:
                queue.push(s)
        for d in decisions:
            running[d.task_id] = d.worker_id
            started.setdefault(d.task_id, now)
            heapq.heappush(timeline, (now + jobs[d.task_id].service_s, n, "done", d.task_id))
            n += 1
    return _stats({t: j.state.submitted_at for t, j in jobs.items()}, started, finished,
                  {t: j.state.run_id or "" for t, j in jobs.items()})
