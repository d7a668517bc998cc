"""The task aggregate as given-events / when-command / then-events."""

from __future__ import annotations

import pytest

from dtf_core.errors import NotFound, Refused
from dtf_core.events.task import (
    Placement,
    ResultRefused,
    TaskCancelled,
    TaskCancelRequested,
    TaskFailed,
    TaskLeased,
    TaskRequeued,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
)
from dtf_core.ids import task_id_for_key
from dtf_core.task import (
    MAX_LOSSES,
    decide_cancel,
    decide_dependency_failed,
    decide_lease,
    decide_lease_lost,
    decide_report,
    decide_submit,
    evolve,
)
from tests.unit.builders import ACTOR, T0, fold, leased, report, spec, submitted, then

NOW = T0 + 10


def given_leased(max_retries: int = 0, delay: float = 0.0):  # type: ignore[no-untyped-def]
    """submitted (seq 1) + leased to w1 (seq 2): the fencing token is 2."""
    return fold(submitted(task_spec=spec(max_retries, delay)), leased())


def outcome(cls, **kw):  # type: ignore[no-untyped-def]
    fields = {"task_id": "t1", "attempt": 1, "fencing": 2, "worker_id": "w1", "at": NOW,
              "actor": ACTOR}
    fields.update(kw)
    return cls(**fields)


# --- evolve -----------------------------------------------------------------------------------


def test_submitted_creates_a_queued_task() -> None:
    state = fold(submitted())
    assert state.task_id == "t1"
    assert state.status == "queued"
    assert state.run_id == "r1"
    assert state.submitted_at == T0
    assert state.last_seq == 1
    assert state.attempt == 0 and state.lease_seq == 0


def test_event_for_unknown_task_raises_not_found() -> None:
    with pytest.raises(NotFound):
        evolve(None, leased(), 1)


def test_a_second_submitted_changes_nothing() -> None:
    state = fold(submitted())
    assert evolve(state, submitted(task_spec=spec(max_retries=5)), 7) is state


def test_leased_records_the_lease_and_its_fencing_token() -> None:
    state = given_leased()
    assert state.status == "leased"
    assert state.lease_seq == 2
    assert state.attempt == 1
    assert (state.worker_id, state.session) == ("w1", "s1")
    assert state.live and not state.terminal


@pytest.mark.parametrize("seq", [1, 2])
def test_evolve_ignores_events_at_or_below_last_seq(seq: int) -> None:
    state = given_leased()
    requeue = outcome(TaskRequeued, reason="lost")
    assert evolve(state, requeue, seq) is state
    assert evolve(state, requeue, 3).status == "queued"


def test_started_marks_running() -> None:
    state = then(given_leased(), [TaskStarted(task_id="t1", attempt=1, fencing=2, worker_id="w1",
                                              at=NOW, actor=ACTOR)])
    assert state.status == "running"
    assert state.started_at == NOW
    assert state.live


@pytest.mark.parametrize(
    ("cls", "status"),
    [(TaskSucceeded, "succeeded"), (TaskFailed, "failed"), (TaskTimedOut, "timed_out"),
     (TaskCancelled, "cancelled")],
)
def test_outcome_events_end_the_task(cls: type, status: str) -> None:
    state = then(given_leased(), [outcome(cls, exit_code=3, error="boom")])
    assert state.status == status
    assert state.terminal and not state.live
    assert state.finished_at == NOW
    assert (state.exit_code, state.error) == (3, "boom")


def test_result_refused_only_counts() -> None:
    before = given_leased()
    refused = ResultRefused(task_id="t1", fencing=1, worker_id="w9", outcome="succeeded",
                            reason="stale", at=NOW, actor=ACTOR)
    after = then(before, [refused])
    assert after.refused_results == 1
    assert (after.status, after.lease_seq, after.worker_id) == ("leased", 2, "w1")


# --- decide_submit (invariant 5) --------------------------------------------------------------


def test_submit_new_task() -> None:
    events = decide_submit(None, "t1", spec(), run_id="r1", now=T0, actor=ACTOR)
    assert events == [submitted()]


def test_submit_with_the_same_idempotency_key_makes_one_task() -> None:
    task_id = task_id_for_key("build-42")
    first = decide_submit(None, task_id, spec(), run_id=None, now=T0, actor=ACTOR)
    state = fold(*first)
    again = decide_submit(state, task_id_for_key("build-42"), spec(), run_id=None,
                          now=T0 + 5, actor=ACTOR)
    assert len(first) == 1
    assert again == []


# --- decide_lease (invariant 1) ---------------------------------------------------------------


def test_lease_a_queued_task() -> None:
    why = Placement(candidates=2, filtered={"w2": "lacks hardware gpu"}, scores={"w1": 0.5})
    state = fold(submitted())
    event = decide_lease(state, worker_id="w1", session="s1", now=NOW, actor=ACTOR, why=why)
    assert event == TaskLeased(task_id="t1", worker_id="w1", session="s1", attempt=1, at=NOW,
                               actor=ACTOR, why=why, spec=state.spec)


def test_second_lease_on_a_leased_task_is_refused() -> None:
    with pytest.raises(Refused, match="leased"):
        decide_lease(given_leased(), worker_id="w2", session="s2", now=NOW, actor=ACTOR)


def test_lease_on_a_running_task_is_refused() -> None:
    state = then(given_leased(), decide_report(given_leased(), report("started", 2), now=NOW,
                                               actor=ACTOR))
    assert state.status == "running"
    with pytest.raises(Refused):
        decide_lease(state, worker_id="w2", session="s2", now=NOW, actor=ACTOR)


def test_lease_on_a_terminal_task_is_refused() -> None:
    state = then(given_leased(), [outcome(TaskSucceeded)])
    with pytest.raises(Refused, match="succeeded"):
        decide_lease(state, worker_id="w1", session="s1", now=NOW, actor=ACTOR)


def test_lease_before_not_before_is_refused_and_allowed_at_it() -> None:
    state = given_leased(max_retries=1, delay=30)
    state = then(state, decide_report(state, report("failed", 2), now=NOW, actor=ACTOR))
    assert state.not_before == NOW + 30
    with pytest.raises(Refused, match="retry delay"):
        decide_lease(state, worker_id="w1", session="s1", now=NOW + 29.9, actor=ACTOR)
    event = decide_lease(state, worker_id="w1", session="s1", now=NOW + 30, actor=ACTOR)
    assert event.attempt == 2


def test_queued_task_with_a_cancel_request_is_not_leased() -> None:
    state = then(
        given_leased(),
        [TaskCancelRequested(task_id="t1", worker_id="w1", at=NOW, actor=ACTOR),
         outcome(TaskRequeued, reason="worker stopped", counted=False)],
    )
    assert state.status == "queued" and state.cancel_requested
    with pytest.raises(Refused):
        decide_lease(state, worker_id="w1", session="s1", now=NOW, actor=ACTOR)


# --- decide_report (invariants 2 and 3) -------------------------------------------------------


def test_started_under_the_current_lease() -> None:
    events = decide_report(given_leased(), report("started", 2, pid=77), now=NOW, actor=ACTOR)
    assert events == [TaskStarted(task_id="t1", attempt=1, fencing=2, worker_id="w1", pid=77,
                                  at=NOW, actor=ACTOR)]


def test_started_resent_while_running_is_a_no_op() -> None:
    state = given_leased()
    state = then(state, decide_report(state, report("started", 2), now=NOW, actor=ACTOR))
    assert decide_report(state, report("started", 2), now=NOW + 1, actor=ACTOR) == []


def test_succeeded_under_the_current_lease() -> None:
    events = decide_report(
        given_leased(),
        report("succeeded", 2, exit_code=0, duration_s=1.5, started_at=T0 + 2, max_rss_mb=12.0),
        now=NOW,
        actor=ACTOR,
    )
    assert events == [outcome(TaskSucceeded, exit_code=0, duration_s=1.5, started_at=T0 + 2,
                              max_rss_mb=12.0)]


def test_outcome_keeps_the_started_time_of_the_state() -> None:
    state = given_leased()
    state = then(state, decide_report(state, report("started", 2), now=T0 + 3, actor=ACTOR))
    [event] = decide_report(state, report("succeeded", 2), now=NOW, actor=ACTOR)
    assert isinstance(event, TaskSucceeded)
    assert event.started_at == T0 + 3


def test_report_under_a_stale_lease_is_refused_and_recorded() -> None:
    state = given_leased()
    [event] = decide_report(state, report("succeeded", 1), now=NOW, actor=ACTOR)
    assert isinstance(event, ResultRefused)
    assert (event.fencing, event.worker_id, event.outcome) == (1, "w1", "succeeded")
    assert "stale lease 1" in event.reason and "current lease is 2" in event.reason
    after = then(state, [event])
    assert after.status == "leased" and after.refused_results == 1


def test_report_without_any_lease_is_refused() -> None:
    [event] = decide_report(fold(submitted()), report("succeeded", 0), now=NOW, actor=ACTOR)
    assert isinstance(event, ResultRefused)
    assert "none" in event.reason


def test_report_from_another_worker_is_refused() -> None:
    [event] = decide_report(given_leased(), report("succeeded", 2, worker="w2"), now=NOW,
                            actor=ACTOR)
    assert isinstance(event, ResultRefused)
    assert "another worker" in event.reason


@pytest.mark.parametrize("kind", ["succeeded", "started"])
def test_resent_report_after_terminal_is_idempotent(kind: str) -> None:
    state = given_leased()
    state = then(state, decide_report(state, report("succeeded", 2), now=NOW, actor=ACTOR))
    assert state.status == "succeeded"
    assert decide_report(state, report(kind, 2), now=NOW + 1, actor=ACTOR) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "fencing"), [("failed", 2), ("succeeded", 1), ("timed_out", 2)])
def test_other_report_after_terminal_is_refused(kind: str, fencing: int) -> None:
    state = given_leased()
    state = then(state, decide_report(state, report("succeeded", 2), now=NOW, actor=ACTOR))
    [event] = decide_report(state, report(kind, fencing), now=NOW + 1, actor=ACTOR)  # type: ignore[arg-type]
    assert isinstance(event, ResultRefused)
    assert "already succeeded" in event.reason


@pytest.mark.parametrize("kind", ["failed", "timed_out"])
def test_failure_with_retries_left_requeues_after_the_delay(kind: str) -> None:
    state = given_leased(max_retries=2, delay=15)
    events = decide_report(state, report(kind, 2, exit_code=1, error="boom"), now=NOW, actor=ACTOR)  # type: ignore[arg-type]
    assert events == [outcome(TaskRequeued, reason=kind, not_before=NOW + 15, exit_code=1,
                              error="boom")]
    after = then(state, events)
    assert after.status == "queued"
    assert after.failures == 1
    assert after.not_before == NOW + 15
    assert (after.lease_seq, after.worker_id) == (0, "")
    assert not after.terminal


def test_retries_exhausted_fails_the_task() -> None:
    state = given_leased(max_retries=1)
    state = then(state, decide_report(state, report("failed", 2), now=NOW, actor=ACTOR))
    state = then(state, [decide_lease(state, worker_id="w2", session="s2", now=NOW, actor=ACTOR)])
    assert (state.attempt, state.lease_seq, state.worker_id) == (2, 4, "w2")
    events = decide_report(state, report("failed", 4, worker="w2", exit_code=2), now=NOW + 1,
                           actor=ACTOR)
    assert events == [outcome(TaskFailed, attempt=2, fencing=4, worker_id="w2", exit_code=2,
                              at=NOW + 1)]
    assert then(state, events).status == "failed"


def test_failure_of_a_task_being_cancelled_is_final() -> None:
    state = given_leased(max_retries=3)
    state = then(state, decide_cancel(state, now=NOW, actor=ACTOR, reason="user"))
    [event] = decide_report(state, report("failed", 2), now=NOW, actor=ACTOR)
    assert isinstance(event, TaskFailed)


def test_cancelled_report_cancels() -> None:
    [event] = decide_report(given_leased(), report("cancelled", 2), now=NOW, actor=ACTOR)
    assert isinstance(event, TaskCancelled)
    assert event.fencing == 2


# --- decide_cancel ----------------------------------------------------------------------------


def test_cancel_a_queued_task() -> None:
    events = decide_cancel(fold(submitted()), now=NOW, actor=ACTOR, reason="not needed")
    assert events == [TaskCancelled(task_id="t1", attempt=0, error="not needed", at=NOW,
                                    actor=ACTOR)]


def test_cancel_a_leased_task_asks_its_worker() -> None:
    state = given_leased()
    events = decide_cancel(state, now=NOW, actor=ACTOR, reason="user")
    assert events == [TaskCancelRequested(task_id="t1", worker_id="w1", reason="user", at=NOW,
                                          actor=ACTOR)]
    state = then(state, events)
    assert state.cancel_requested and state.status == "leased"
    assert decide_cancel(state, now=NOW + 1, actor=ACTOR, reason="user") == []


@pytest.mark.parametrize("cls", [TaskSucceeded, TaskFailed, TaskTimedOut, TaskCancelled])
def test_cancel_a_terminal_task_is_refused(cls: type) -> None:
    state = then(given_leased(), [outcome(cls)])
    with pytest.raises(Refused, match="already"):
        decide_cancel(state, now=NOW, actor=ACTOR, reason="user")


# --- decide_lease_lost ------------------------------------------------------------------------


def test_lease_lost_on_a_queued_task_does_nothing() -> None:
    assert decide_lease_lost(fold(submitted()), reason="gone", now=NOW, actor=ACTOR) == []


def test_lease_lost_on_a_clean_stop_requeues_without_spending_the_budget() -> None:
    state = given_leased(max_retries=0)
    events = decide_lease_lost(state, reason="worker stopped", now=NOW, actor=ACTOR,
                               clean_stop=True)
    assert events == [outcome(TaskRequeued, reason="worker stopped", error="worker stopped",
                              counted=False)]
    after = then(state, events)
    assert after.status == "queued"
    assert (after.failures, after.losses) == (0, 0)
    assert decide_lease(after, worker_id="w2", session="s2", now=NOW, actor=ACTOR).attempt == 2


def test_lease_lost_requeues_without_spending_the_retry_budget() -> None:
    state = given_leased(max_retries=0, delay=5)
    events = decide_lease_lost(state, reason="worker lost", now=NOW, actor=ACTOR)
    assert events == [outcome(TaskRequeued, reason="worker lost", error="worker lost",
                              counted=False, lost=True)]
    after = then(state, events)
    assert (after.status, after.failures, after.losses) == ("queued", 0, 1)
    assert after.not_before == 0.0  # a lost worker is not the task's failure: no retry delay


def test_a_task_that_loses_max_losses_workers_fails() -> None:
    state = given_leased(max_retries=5)
    for i in range(MAX_LOSSES - 1):
        state = then(state, decide_lease_lost(state, reason="worker lost", now=NOW, actor=ACTOR))
        state = then(state, [decide_lease(state, worker_id=f"w{i + 2}", session="s",
                                          now=NOW, actor=ACTOR)])
    assert state.losses == MAX_LOSSES - 1 and state.live
    [event] = decide_lease_lost(state, reason="worker lost", now=NOW, actor=ACTOR)
    assert isinstance(event, TaskFailed)
    assert event.fencing == state.lease_seq
    assert f"lost {MAX_LOSSES} workers" in event.error
    [clean] = decide_lease_lost(state, reason="stopped", now=NOW, actor=ACTOR, clean_stop=True)
    assert isinstance(clean, TaskRequeued)  # a clean stop always requeues


def test_lease_lost_while_cancelling_cancels() -> None:
    state = given_leased(max_retries=5)
    state = then(state, decide_cancel(state, now=NOW, actor=ACTOR, reason="user"))
    [event] = decide_lease_lost(state, reason="worker lost", now=NOW, actor=ACTOR)
    assert isinstance(event, TaskCancelled)


# --- decide_dependency_failed -----------------------------------------------------------------


def test_dependency_failure_cancels_a_queued_dependent() -> None:
    dep = then(fold(submitted("d1"), leased("d1")),
               [outcome(TaskFailed, task_id="d1")])
    state = fold(submitted(task_spec=spec(deps=("d1",))))
    [event] = decide_dependency_failed(state, dep, now=NOW, actor=ACTOR)
    assert isinstance(event, TaskCancelled)
    assert event.error == "dependency d1 ended failed"


def test_dependency_failure_leaves_a_started_dependent_alone() -> None:
    dep = then(fold(submitted("d1")), [outcome(TaskCancelled, task_id="d1", fencing=0)])
    assert decide_dependency_failed(given_leased(), dep, now=NOW, actor=ACTOR) == []


def test_exponential_backoff_with_deterministic_jitter() -> None:
    from dtf_core.retry import retry_delay
    from dtf_core.spec import RetryPolicy

    fixed = RetryPolicy(max_retries=5, retry_delay_seconds=2)
    assert [retry_delay(n, fixed) for n in (1, 2, 3)] == [2, 2, 2]  # the seed's fixed delay
    expo = RetryPolicy(max_retries=5, retry_delay_seconds=1, backoff=2, max_delay_seconds=5)
    assert [retry_delay(n, expo) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    jittered = RetryPolicy(max_retries=5, retry_delay_seconds=10, jitter=0.5)
    delays = {retry_delay(1, jittered, f"t{i}") for i in range(50)}
    assert len(delays) > 40 and all(5 <= d <= 15 for d in delays)  # spread, bounded
    assert retry_delay(1, jittered, "t1") == retry_delay(1, jittered, "t1")  # replayable


def test_a_worker_may_decline_a_lease_it_has_not_started() -> None:
    from dtf_core import task as agg
    from dtf_core.events.task import ResultRefused, TaskLeased, TaskRequeued, TaskStarted
    from dtf_core.spec import TaskSpec
    from dtf_core.task import Report, TaskState

    state = TaskState(task_id="t1", spec=TaskSpec(type="noop"))
    state = agg.evolve(state, TaskLeased(task_id="t1", worker_id="w1", session="s",
                                         attempt=1, at=1.0, actor="s"), 5)
    declined = Report(task_id="t1", kind="declined", fencing=5, worker_id="w1",
                      error="all 1 slots are busy")
    (requeued,) = agg.decide_report(state, declined, now=2.0, actor="w1")
    assert isinstance(requeued, TaskRequeued) and not requeued.counted
    assert "declined by worker w1: all 1 slots are busy" in requeued.reason
    running = agg.evolve(state, TaskStarted(task_id="t1", attempt=1, fencing=5,
                                            worker_id="w1", at=2.0, actor="w1"), 6)
    (refused,) = agg.decide_report(running, declined, now=3.0, actor="w1")
    assert isinstance(refused, ResultRefused)


def test_a_steal_ends_the_old_lease_before_the_new_one() -> None:
    from dtf_core import task as agg
    from dtf_core.events.task import TaskLeased, TaskRequeued, TaskStarted
    from dtf_core.spec import TaskSpec
    from dtf_core.task import Report, TaskState

    state = TaskState(task_id="t1", spec=TaskSpec(type="noop"), last_seq=1)
    state = agg.evolve(state, TaskLeased(task_id="t1", worker_id="busy", session="s",
                                         attempt=1, at=1.0, actor="s"), 5)
    requeue, lease = agg.decide_steal(state, worker_id="idle", session="s2", now=9.0,
                                      actor="scheduler")
    assert isinstance(requeue, TaskRequeued) and not requeue.counted
    assert isinstance(lease, TaskLeased) and lease.worker_id == "idle" and lease.attempt == 2
    stolen = agg.evolve(agg.evolve(state, requeue, 6), lease, 7)
    assert (stolen.status, stolen.worker_id, stolen.lease_seq) == ("leased", "idle", 7)
    late = Report(task_id="t1", kind="started", fencing=5, worker_id="busy")
    assert type(agg.decide_report(stolen, late, now=10, actor="busy")[0]).__name__ == \
        "ResultRefused"  # the old worker's start is refused by its stale fencing token
    started = agg.evolve(stolen, TaskStarted(task_id="t1", attempt=2, fencing=7,
                                             worker_id="idle", at=9.5, actor="idle"), 8)
    assert agg.decide_steal(started, worker_id="other", session="x", now=20,
                            actor="s") == []  # a started lease is never stolen
