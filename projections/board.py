"""The board: every task, worker and run folded from the log, with the indices agents need.

A pure fold (no IO): the api, scheduler and recovery agents and the CLI's replay all use it.
"""

from __future__ import annotations

import hashlib
import heapq

import msgspec

from dtf_core import task as task_agg
from dtf_core import worker as worker_agg
from dtf_core.events.auth import AuthEventBase
from dtf_core.events.codec import Event
from dtf_core.events.lead import LeadershipClaimed
from dtf_core.events.run import RunCreated
from dtf_core.events.scale import ScaleEvent, ScaleEventBase
from dtf_core.events.task import TaskEventBase, TaskLeased, TaskSubmitted, submission_in
from dtf_core.events.worker import WorkerEventBase
from dtf_core.spec import TaskSpec, all_dependencies
from dtf_core.task import LIVE, TERMINAL, TaskState
from dtf_core.worker import WorkerState
from projections.auth import AuthState

_hash_encoder = msgspec.msgpack.Encoder(order="deterministic")
# A task that ended more than this many events ago leaves the board: only its id and final
# status stay (``finished``). Its history is in the log and its rows in DuckDB. The rule
# depends on log positions only, so a replay compacts exactly what the live fold did, and a
# snapshot (and a cold start) grows with recent work, not with every task ever submitted.
COMPACT_AFTER = 100_000
_TOMBSTONE_SPEC = TaskSpec(type="noop")
SCALE_KEEP = 20  # the autoscaler's newest decisions kept per group (for explain)


def note_scale(scaling: dict[str, list[ScaleEvent]], event: ScaleEvent) -> None:
    """Keep the newest scale events of each group (what explain tells)."""
    recent = scaling.setdefault(event.group, [])
    recent.append(event)
    del recent[:-SCALE_KEEP]


def _makes_task(event: TaskEventBase) -> bool:
    """A task's first event: its submission, or a lease that is its submission too (ADR
    0018)."""
    return isinstance(event, TaskSubmitted) or (
        isinstance(event, TaskLeased) and submission_in(event) is not None)


class Board:
    """``from_leases``: a board that never sees ``submitted`` events (recovery filters them
    out on the server) creates a task from its first lease, which carries the spec."""

    def __init__(self, *, from_leases: bool = False,
                 compact_after: int | None = COMPACT_AFTER) -> None:
        self.from_leases = from_leases
        self.compact_after = compact_after
        self.tasks: dict[str, TaskState] = {}  # in the order of their last change
        self.finished: dict[str, str] = {}  # compacted: task id -> its terminal status
        # (seq it ended at, task), a heap: an agent's own appends come before earlier ones
        self.ended: list[tuple[int, str]] = []
        self.workers: dict[str, WorkerState] = {}
        self.runs: dict[str, RunCreated] = {}
        self.leases_by_worker: dict[str, set[str]] = {}
        self.dependents: dict[str, set[str]] = {}
        self.last_seq = 0
        self.counts: dict[str, int] = {}
        self.auth = AuthState()
        self.leaders: dict[str, LeadershipClaimed] = {}  # role -> newest claim
        self.lead_seq: dict[str, int] = {}  # role -> its last claim's sequence
        # "<kind>.<id>" -> the newest message on that aggregate's subjects that is not an
        # event (see ``note_stray``): its next append must expect it.
        self.strays: dict[str, int] = {}
        self.scaling: dict[str, list[ScaleEvent]] = {}  # group -> its newest scale events

    def apply(self, seq: int, event: Event) -> TaskState | WorkerState | None:
        """Fold one event; returns the changed task or worker state (None for runs/no-ops)."""
        if seq > self.last_seq:
            self.last_seq = seq
        if isinstance(event, TaskEventBase):
            changed = self._apply_task(seq, event)
            if ((ended := self.ended) and self.compact_after is not None
                    and ended[0][0] <= self.last_seq - self.compact_after):
                self._compact(self.last_seq - self.compact_after)
            return changed
        if isinstance(event, WorkerEventBase):
            old_w = self.workers.get(event.worker_id)
            new_w = worker_agg.evolve(old_w, event, seq)
            if new_w is old_w:
                return None
            self.workers[event.worker_id] = new_w
            return new_w
        if isinstance(event, RunCreated):
            self.runs.setdefault(event.run_id, event)
        elif isinstance(event, AuthEventBase):
            self.auth.apply(event)
        elif isinstance(event, LeadershipClaimed):
            current = self.leaders.get(event.role)
            if current is None or event.term >= current.term:
                self.leaders[event.role] = event
            self.lead_seq[event.role] = seq
        elif isinstance(event, ScaleEventBase):
            note_scale(self.scaling, event)
        return None

    def _apply_task(self, seq: int, event: TaskEventBase) -> TaskState | None:
        old = self.tasks.get(event.task_id)
        if old is None and event.task_id in self.finished:
            return None  # ended long ago and compacted: a late event changes nothing
        if old is None and not _makes_task(event):
            if not (self.from_leases and isinstance(event, TaskLeased) and event.spec):
                return None  # an event for a task we never saw: nothing to fold into
            old = task_agg.TaskState(task_id=event.task_id, spec=event.spec,
                                     submitted_at=event.at)
        new = task_agg.evolve(old, event, seq)  # type: ignore[arg-type]
        if new is old:
            return None
        self.tasks.pop(new.task_id, None)  # moved last: lists read the newest from the end
        self.tasks[new.task_id] = new
        if old is None or old.status != new.status or old.worker_id != new.worker_id:
            self._index(old, new)  # else the indexed facts did not change (a start, a note)
        if new.status in TERMINAL:
            heapq.heappush(self.ended, (new.last_seq, new.task_id))
        return new

    def _compact(self, limit: int) -> None:
        ended = self.ended
        while ended and ended[0][0] <= limit:
            seq, task_id = heapq.heappop(ended)
            t = self.tasks.get(task_id)
            if t is None or t.last_seq != seq or t.status not in TERMINAL:
                continue  # a later event re-queued this entry
            del self.tasks[task_id]
            self.finished[task_id] = t.status
            self.dependents.pop(task_id, None)
            for dep in all_dependencies(t.spec):
                waiting = self.dependents.get(dep)
                if waiting is not None:
                    waiting.discard(task_id)
                    if not waiting:
                        del self.dependents[dep]

    def known(self, task_id: str) -> bool:
        return task_id in self.tasks or task_id in self.finished

    def task_or_tombstone(self, task_id: str) -> TaskState | None:
        """The task, or for a compacted one a stand-in that holds only its id and final
        status (what dependency checks need); None for an unknown id."""
        if (t := self.tasks.get(task_id)) is not None:
            return t
        if (status := self.finished.get(task_id)) is None:
            return None
        return TaskState(task_id=task_id, spec=_TOMBSTONE_SPEC, status=status)  # type: ignore[arg-type]

    def _index(self, old: TaskState | None, new: TaskState) -> None:
        counts = self.counts
        if old is None:
            if new.spec.dependencies or new.spec.soft_dependencies:
                for dep in all_dependencies(new.spec):
                    self.dependents.setdefault(dep, set()).add(new.task_id)
        else:
            counts[old.status] = counts.get(old.status, 0) - 1
            if old.status in LIVE and old.worker_id:
                self.leases_by_worker.get(old.worker_id, set()).discard(old.task_id)
        counts[new.status] = counts.get(new.status, 0) + 1
        if new.status in LIVE:
            self.leases_by_worker.setdefault(new.worker_id, set()).add(new.task_id)

    def note_stray(self, seq: int, subject: str) -> None:
        """A message on an aggregate's subjects that is not an event: junk that anyone
        with a way to publish there put on the log (a redirected reply, a bad client). It is
        not folded (the agents dead-letter it), but it is the newest message on those
        subjects, so the aggregate's next append must expect its sequence, or nothing could
        ever be appended there again and the task (worker, run, leadership) would be stuck."""
        if seq > self.last_seq:
            self.last_seq = seq
        parts = subject.split(".", 4)
        if len(parts) >= 4 and parts[0] == "dtf" and parts[1] == "evt" and parts[3]:
            key = f"{parts[2]}.{parts[3]}"
            if seq > self.strays.get(key, 0):
                self.strays[key] = seq

    def expect(self, kind: str, ident: str, folded: int) -> int:
        """The sequence an append to aggregate ``kind``/``ident`` expects last on its
        subjects: its newest folded event's, or a newer stray message's."""
        return max(folded, self.strays.get(f"{kind}.{ident}", 0))

    def state_hash(self) -> str:
        """A hash of the whole folded state: equal logs give equal hashes."""
        h = hashlib.sha256()
        for key in sorted(self.tasks):
            h.update(_hash_encoder.encode(self.tasks[key]))
        for key in sorted(self.workers):
            h.update(_hash_encoder.encode(self.workers[key]))
        for key in sorted(self.runs):
            h.update(_hash_encoder.encode(self.runs[key]))
        h.update(_hash_encoder.encode(sorted(self.finished.items())))
        h.update(self.auth.digest())
        return h.hexdigest()
