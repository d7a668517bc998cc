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
    submission_in,
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


class Verifier:
    """Checks events one at a time, in log order (a million events need not be in memory
    at once); ``audit`` is the result so far."""

    def __init__(self) -> None:
        self.audit = Audit()
        self._lease: dict[str, int] = {}  # task -> live lease seq (absent: none)
        self._terminal: dict[str, int] = {}  # task -> terminal events seen
        self._keys: dict[str, str] = {}  # idempotency key -> task
        self._submitted: set[str] = set()

    def _bad(self, n: int, seq: int, ident: str, detail: str) -> None:
        self.audit.violations.append(Violation(n, seq, ident, detail))

    def feed(self, seq: int, ev: Event) -> None:
        self.audit.events += 1
        if not getattr(ev, "actor", ""):
            self._bad(6, seq, getattr(ev, "task_id", "") or getattr(ev, "worker_id", ""),
                      f"{event_type(ev)} event names no actor")
        kind = _KINDS.get(type(ev))
        if kind is None:
            kind = _KINDS[type(ev)] = _kind(type(ev))
        if kind is _OTHER:
            return
        tid = ev.task_id  # type: ignore[union-attr]
        lease = self._lease
        if kind is _SUBMITTED:
            self._submission(seq, tid, ev.spec.idempotency_key)  # type: ignore[union-attr]
        elif kind is _LEASED:
            if (submitted := submission_in(ev)) is not None:  # type: ignore[arg-type]
                self._submission(seq, tid, submitted.spec.idempotency_key)
            if tid in lease:
                self._bad(1, seq, tid,
                          f"leased to {ev.worker_id} while lease {lease[tid]} is live")  # type: ignore[union-attr]
            lease[tid] = seq
        elif kind is _STARTED:
            if lease.get(tid) != ev.fencing:  # type: ignore[union-attr]
                self._bad(3, seq, tid, f"started under lease {ev.fencing}, live lease is "  # type: ignore[union-attr]
                                       f"{lease.get(tid, 'none')}")
        elif kind is not _TASK:  # an attempt's outcome
            fencing = ev.fencing  # type: ignore[union-attr]
            if fencing and lease.get(tid) != fencing:
                self._bad(3, seq, tid, f"{event_type(ev)} under lease {fencing}, live "
                                       f"lease is {lease.get(tid, 'none')}")
            lease.pop(tid, None)
            if kind is _TERMINAL:
                count = self._terminal[tid] = self._terminal.get(tid, 0) + 1
                if count > 1:
                    self._bad(2, seq, tid, f"a second terminal event ({event_type(ev)})")

    def _submission(self, seq: int, tid: str, key: str | None) -> None:
        self._submitted.add(tid)
        if key is not None:
            first = self._keys.setdefault(key, tid)
            if first != tid:
                self._bad(5, seq, tid, f"idempotency key {key!r} also made task {first}")

    def result(self) -> Audit:
        self.audit.tasks = len(self._submitted)
        self.audit.open_tasks = len(self._submitted - set(self._terminal))
        return self.audit


# What ``feed`` does with an event depends on its class alone: each class is looked at once.
_OTHER, _TASK, _SUBMITTED, _LEASED, _STARTED, _OUTCOME, _TERMINAL = (
    "other", "task", "submitted", "leased", "started", "outcome", "terminal")
_KINDS: dict[type, str] = {}


def _kind(cls: type) -> str:
    if not issubclass(cls, TaskEventBase):
        return _OTHER
    for base, kind in ((TaskSubmitted, _SUBMITTED), (TaskLeased, _LEASED),
                       (TaskStarted, _STARTED)):
        if issubclass(cls, base):
            return kind
    if not issubclass(cls, AttemptOutcome):
        return _TASK
    if not issubclass(cls, TaskRequeued) and cls.__struct_config__.tag in TERMINAL:
        return _TERMINAL
    return _OUTCOME


def verify(events: Iterable[tuple[int, Event]]) -> Audit:
    verifier = Verifier()
    for seq, ev in events:
        verifier.feed(seq, ev)
    return verifier.result()
