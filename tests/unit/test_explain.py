"""Given folded state, when explained, then the words say why."""

from __future__ import annotations

from dtf_core.events.task import Placement, TaskLeased
from dtf_core.events.worker import Capabilities
from dtf_core.explain import explain
from dtf_core.spec import Requirements, TaskSpec
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState

NOW = 1000.0


def task(**kw: object) -> TaskState:
    spec = TaskSpec(type="noop", requirements=kw.pop("req", Requirements()))  # type: ignore[arg-type]
    return TaskState(task_id="t1", spec=spec, submitted_at=990.0, **kw)  # type: ignore[arg-type]


def worker(wid: str, slots: int = 2, **caps: object) -> WorkerState:
    return WorkerState(worker_id=wid, session="s", slots=slots,
                       capabilities=Capabilities(**caps))  # type: ignore[arg-type]


def test_no_live_worker() -> None:
    lines = explain(task(), None, {}, {}, {}, 0, NOW)
    assert lines[0] == "Task t1 is queued, waiting 10.0s since it was submitted."
    assert "No worker is alive" in lines[-1]


def test_requirements_nobody_meets_are_named_per_worker() -> None:
    workers = {"w1": worker("w1", hardware=("cpu",)), "w2": worker("w2", group="lab")}
    lines = explain(task(req=Requirements(hardware=("cuda",))), None, workers, {}, {}, 0, NOW)
    assert lines[1] == "No live worker meets its requirements:"
    assert "  - w1 lacks hardware cuda" in lines and "  - w2 lacks hardware cuda" in lines


def test_full_workers_and_the_queue_ahead() -> None:
    lines = explain(task(), None, {"w1": worker("w1", slots=1)}, {"w1": 1}, {}, 3, NOW)
    assert lines[-1] == ("Every worker that can run it is full: w1 (1/1 slots); "
                         "3 queued task(s) are ahead of it.")


def test_cordoned_worker_and_dependencies_and_backoff() -> None:
    w = worker("w1")
    cordoned = WorkerState(**{**{f: getattr(w, f) for f in w.__struct_fields__},
                              "scheduling": "cordoned"})
    dep = TaskState(task_id="d1", spec=TaskSpec(type="noop"), status="running")
    lines = explain(task(not_before=NOW + 5, failures=1), None, {"w1": cordoned}, {},
                    {"d1": dep, "d2": None}, 0, NOW)
    assert "It waits for its retry back-off: 5.0s more (after 1 failed attempt(s))." in lines
    assert "It waits for dependency d1 (running)." in lines
    assert "It waits for dependency d2 (unknown)." in lines
    assert "  - w1 is cordoned" in lines


def test_a_placed_task_says_why_it_went_there() -> None:
    why = Placement(candidates=1, filtered={"w2": "lacks hardware cuda"}, scores={"w1": 0.5})
    lease = TaskLeased(task_id="t1", worker_id="w1", session="s", attempt=1, why=why,
                       at=NOW, actor="scheduler")
    lines = explain(task(status="running", worker_id="w1", attempt=1), lease, {}, {}, {}, 0,
                    NOW)
    assert lines == [
        "Task t1 is running on worker w1 (attempt 1).",
        "Attempt 1 was placed on worker w1.",
        "Policy 'priority': 1 worker(s) could take it; 1 were ruled out:",
        "  - w2 lacks hardware cuda",
        "Chosen by the policy's score: w1 0.5.",
    ]


def test_waiting_reasons_are_short_codes_and_deduplicated() -> None:
    from dtf_core import task as agg
    from dtf_core.explain import waiting_reason

    gpu = task(req=Requirements(hardware=("cuda",)))
    assert waiting_reason(gpu, {}, {}, {}, NOW)[0] == "no_worker"
    assert waiting_reason(gpu, {"w1": worker("w1")}, {}, {}, NOW)[0] == "no_match"
    assert waiting_reason(task(), {"w1": worker("w1", slots=1)}, {"w1": 1}, {}, NOW)[0] == "full"
    assert waiting_reason(task(not_before=NOW + 1), {}, {}, {}, NOW)[0] == "backoff"
    assert waiting_reason(task(), {}, {}, {"d": None}, NOW)[0] == "dependencies"
    (first,) = agg.decide_waiting(gpu, "no_match", "no live worker", now=NOW, actor="s")
    again = agg.evolve(gpu, first, 7)
    assert agg.decide_waiting(again, "no_match", "no live worker", now=NOW + 60,
                              actor="s") == []  # the same reason is not written twice
    assert agg.decide_waiting(again, "full", "busy", now=NOW + 60, actor="s") != []


def test_the_autoscalers_decisions_while_it_waited_are_told() -> None:
    from dtf_core.events.scale import ScaleDone, ScaleRequested
    from dtf_core.explain import scaling_lines

    A = {"actor": "autoscaler"}
    scaling = {"local": [
        ScaleRequested(group="local", decision="d0", direction="down", current=2, target=0,
                       reason="0 queued", at=900.0, **A),
        ScaleRequested(group="local", decision="d1", direction="up", current=0, target=4,
                       reason="12 queued and 0 running need 12 worker(s)", at=992.0, **A),
        ScaleDone(group="local", decision="d1", ok=True, reason="started 4 worker(s)",
                  at=992.1, **A),
        ScaleRequested(group="local", decision="d2", direction="up", current=4, target=5,
                       reason="a task has waited 6.0s", at=998.0, **A),
        ScaleDone(group="local", decision="d2", ok=False, reason="OSError: no room",
                  at=998.5, **A)]}
    lines = scaling_lines(scaling, since=990.0, until=NOW, now=NOW, queued=False)
    assert lines == [
        "The autoscaler of group 'local' scaled up from 0 to 4 worker(s) 8.0s ago: 12 queued "
        "and 0 running need 12 worker(s); started 4 worker(s).",
        "The autoscaler of group 'local' scaled up from 4 to 5 worker(s) 2.0s ago: a task has "
        "waited 6.0s; it failed: OSError: no room."]
    # a queued task that waited through no decision still hears the newest one
    late = scaling_lines(scaling, since=999.0, until=NOW, now=NOW, queued=True)
    assert late == [lines[1]]
    assert scaling_lines(scaling, since=999.0, until=NOW, now=NOW, queued=False) == []
