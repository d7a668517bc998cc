"""`dtf audit verify`: the design's invariants, checked over a log. Pure: events in,
violations out.

1. A task has at most one live lease at any time.
2. Every submitted task ends in at most one terminal event (and open ones are counted).
3. A result is applied only under the current lease.
5. One idempotency key makes one task.
6. Every event names its actor.
(4, a rebuilt projection equals the live one, needs the projector: the CLI compares hashes.
7, nothing lost when an agent is killed, is what the chaos tests check with 1 to 3.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dtf_core.events.codec import Event, event_type
from dtf_core.events.task import (
    AttemptOutcome,
    TaskEventBase,
    TaskLeased,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from dtf_core.task import TERMINAL


@dataclass(frozen=True)
class Violation:
    invariant: int
    seq: int
    subject_id: str
    detail: str


@dataclass
class Audit:
    events: int = 0
    tasks: int = 0
    open_tasks: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations


def verify(events: Iterable[tuple[int, Event]]) -> Audit:
    audit = Audit()
    lease: dict[str, int] = {}  # task -> live lease seq (absent: none)
    terminal: dict[str, int] = {}  # task -> terminal events seen
    keys: dict[str, str] = {}  # idempotency key -> task
    submitted: set[str] = set()

    def bad(n: int, seq: int, ident: str, detail: str) -> None:
        audit.violations.append(Violation(n, seq, ident, detail))

    for seq, ev in events:
        audit.events += 1
        if not getattr(ev, "actor", ""):
            bad(6, seq, getattr(ev, "task_id", "") or getattr(ev, "worker_id", ""),
                f"{event_type(ev)} event names no actor")
        if not isinstance(ev, TaskEventBase):
            continue
        tid = ev.task_id
        if isinstance(ev, TaskSubmitted):
            submitted.add(tid)
            key = ev.spec.idempotency_key
            if key is not None:
                first = keys.setdefault(key, tid)
                if first != tid:
                    bad(5, seq, tid, f"idempotency key {key!r} also made task {first}")
        elif isinstance(ev, TaskLeased):
            if tid in lease:
                bad(1, seq, tid, f"leased to {ev.worker_id} while lease {lease[tid]} is live")
            lease[tid] = seq
        elif isinstance(ev, TaskStarted):
            if lease.get(tid) != ev.fencing:
                bad(3, seq, tid, f"started under lease {ev.fencing}, live lease is "
                                 f"{lease.get(tid, 'none')}")
        elif isinstance(ev, AttemptOutcome):
            if ev.fencing and lease.get(tid) != ev.fencing:
                bad(3, seq, tid, f"{event_type(ev)} under lease {ev.fencing}, live lease is "
                                 f"{lease.get(tid, 'none')}")
            lease.pop(tid, None)
            if not isinstance(ev, TaskRequeued) and event_type(ev) in TERMINAL:
                terminal[tid] = terminal.get(tid, 0) + 1
                if terminal[tid] > 1:
                    bad(2, seq, tid, f"a second terminal event ({event_type(ev)})")
    audit.tasks = len(submitted)
    audit.open_tasks = len(submitted - set(terminal))
    return audit
