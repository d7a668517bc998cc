"""Invariants 1, 2, 3 and 5 of DESIGN.md at the pure level, over random command sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dtf_core.errors import Refused
from dtf_core.events.task import (
    TERMINAL_EVENTS,
    ResultRefused,
    TaskEvent,
    TaskLeased,
    TaskRequeued,
)
from dtf_core.ids import task_id_for_key
from dtf_core.task import (
    MAX_LOSSES,
    TaskState,
    decide_cancel,
    decide_dependency_failed,
    decide_lease,
    decide_lease_lost,
    decide_report,
    decide_submit,
    evolve,
)
from tests.unit.builders import ACTOR, T0, fold, report, spec, submitted

WORKERS = st.sampled_from(["w1", "w2"])
KINDS = st.sampled_from(["started", "succeeded", "failed", "timed_out", "cancelled"])
FENCES = st.sampled_from(["current", "stale", "zero", "future"])
OPS = st.one_of(
    st.tuples(st.just("lease"), WORKERS),
    st.tuples(st.just("report"), KINDS, FENCES, WORKERS),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("lost"), st.booleans()),  # clean stop or not
    st.tuples(st.just("dep_failed")),
    st.tuples(st.just("tick"), st.floats(min_value=0, max_value=60)),
)


@dataclass
class Model:
    state: TaskState
    now: float = T0
    log: list[TaskEvent] = field(default_factory=list)
    leases: list[int] = field(default_factory=list)

    def append(self, events: list[TaskEvent]) -> None:
        for event in events:
            self.state = evolve(self.state, event, self.state.last_seq + 1)
            self.log.append(event)
            if isinstance(event, TaskLeased):
                self.leases.append(self.state.lease_seq)

    def fencing(self, which: str) -> int:
        if which == "current":
            return self.state.lease_seq
        if which == "stale":
            older = [s for s in self.leases if s != self.state.lease_seq]
            return older[-1] if older else 1
        if which == "future":
            return self.state.last_seq + 1
        return 0

    def step(self, op: tuple) -> None:  # type: ignore[type-arg]
        before = self.state
        match op:
            case ("lease", worker):
                try:
                    event = decide_lease(before, worker_id=worker, session="s-" + worker,
                                         now=self.now, actor=ACTOR)
                except Refused:
                    assert before.status != "queued" or before.cancel_requested or (
                        before.not_before > self.now)
                    return
                assert not before.live, "invariant 1: a second live lease was granted"
                self.append([event])
            case ("report", kind, which, worker):
                rep = report(kind, self.fencing(which), worker=worker)
                events = decide_report(before, rep, now=self.now, actor=ACTOR)
                applied = [e for e in events if not isinstance(e, ResultRefused)]
                if applied:
                    assert before.live, "invariant 3: a result applied without a live lease"
                    assert rep.fencing == before.lease_seq != 0, "invariant 3: stale fencing"
                    assert rep.worker_id == before.worker_id
                if before.terminal:
                    assert applied == [], "invariant 2: a report changed a finished task"
                self.append(events)
            case ("cancel",):
                try:
                    events = decide_cancel(before, now=self.now, actor=ACTOR, reason="user")
                except Refused:
                    assert before.terminal
                    return
                self.append(events)
            case ("lost", clean_stop):
                self.append(decide_lease_lost(before, reason="lost", now=self.now, actor=ACTOR,
                                              clean_stop=clean_stop))
            case ("dep_failed",):
                dep = fold(submitted("d1"))
                self.append(decide_dependency_failed(before, dep, now=self.now, actor=ACTOR))
            case ("tick", dt):
                self.now += dt

    def finish(self) -> None:
        """Drive any unfinished task to its end the way a user and recovery would."""
        if not self.state.terminal:
            self.append(decide_cancel(self.state, now=self.now, actor=ACTOR, reason="end"))
        if not self.state.terminal:  # a cancel request ends with its worker's loss
            self.append(decide_lease_lost(self.state, reason="end", now=self.now, actor=ACTOR))


def check_log(log: list[TaskEvent]) -> None:
    live = False
    terminals = 0
    for event in log:
        if isinstance(event, TaskLeased):
            assert not live, "invariant 1: two live leases in the log"
            live = True
        elif isinstance(event, TaskRequeued):
            live = False
        elif isinstance(event, TERMINAL_EVENTS):
            assert terminals == 0, "invariant 2: a second terminal event"
            terminals += 1
            live = False
    assert terminals <= 1


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(OPS, max_size=30),
    max_retries=st.integers(min_value=0, max_value=3),
    delay=st.sampled_from([0.0, 10.0]),
)
def test_random_command_sequences_keep_the_invariants(
    ops: list[tuple], max_retries: int, delay: float  # type: ignore[type-arg]
) -> None:
    model = Model(state=fold(submitted(task_spec=spec(max_retries, delay))))
    for op in ops:
        model.step(op)
        check_log(model.log)
    model.finish()
    check_log(model.log)
    assert model.state.terminal
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in model.log) == 1
    assert model.state.failures <= max_retries
    assert model.state.losses <= MAX_LOSSES


@settings(max_examples=50, deadline=None)
@given(key=st.text(min_size=1, max_size=256), times=st.integers(min_value=2, max_value=5))
def test_the_same_idempotency_key_always_makes_one_task(key: str, times: int) -> None:
    state: TaskState | None = None
    created = 0
    for i in range(times):
        events = decide_submit(state, task_id_for_key(key), spec(), run_id=None, now=T0 + i,
                               actor=ACTOR)
        created += len(events)
        for event in events:
            state = evolve(state, event, i + 1)
    assert created == 1
