"""Given queued tasks, when the ready queue pops under a policy, then the order is the
policy's: priority, earliest deadline, fair share across runs; or plain FIFO."""

from __future__ import annotations

import pytest

from agents.control.policy_plugins import available, load_policy
from dtf_core import task as task_agg
from dtf_core.errors import InvalidInput
from dtf_core.events.task import TaskDeadlineMissed
from dtf_core.policy import DefaultPolicy, FifoPolicy
from dtf_core.queue import ReadyQueue
from dtf_core.spec import TaskSpec
from dtf_core.task import TaskState


def t(task_id: str, at: float, priority: int = 0, run: str | None = None,
      deadline: float | None = None) -> TaskState:
    return TaskState(task_id=task_id, spec=TaskSpec(type="noop", priority=priority,
                                                    deadline=deadline),
                     run_id=run, submitted_at=at)


def drain(q: ReadyQueue, load: dict[str, int] | None = None) -> list[str]:
    out = []
    while (task_id := q.pop(load)) is not None:
        out.append(task_id)
    return out


def test_priority_then_earliest_deadline_then_submission() -> None:
    q = ReadyQueue(DefaultPolicy())
    for task in (t("late", 1), t("dl50", 2, deadline=50), t("dl20", 3, deadline=20),
                 t("urgent", 4, priority=5), t("first", 0)):
        q.push(task)
    assert drain(q) == ["urgent", "dl20", "dl50", "first", "late"]


def test_fair_share_interleaves_a_small_run_with_a_huge_one() -> None:
    q = ReadyQueue(DefaultPolicy())
    for i in range(100):
        q.push(t(f"big{i}", i, run="huge"))
    q.push(t("small0", 200, run="small"))
    q.push(t("small1", 201, run="small"))
    load = {"huge": 3}  # the huge run already holds three leases
    picked = [q.pop(load) for _ in range(6)]
    assert picked[:2] == ["small0", "small1"]  # the small run is not starved
    assert picked[2:] == ["big0", "big1", "big2", "big3"]


def test_fair_share_never_overrides_priority() -> None:
    q = ReadyQueue(DefaultPolicy())
    q.push(t("hi", 5, priority=9, run="busy"))
    q.push(t("lo", 0, priority=0, run="idle"))
    assert q.pop({"busy": 50}) == "hi"


def test_fifo_ignores_priority_and_runs() -> None:
    q = ReadyQueue(FifoPolicy())
    for task in (t("b", 2, priority=9, run="x"), t("a", 1, run="y"), t("c", 3, priority=-1)):
        q.push(task)
    assert drain(q, {"x": 0, "y": 9}) == ["a", "b", "c"]


def test_policies_are_found_by_name_including_entry_points() -> None:
    from importlib.metadata import entry_points

    assert {"default", "fifo"} <= set(available())
    # the two shipped policies are registered the way a plugin package registers its own
    assert {ep.name for ep in entry_points(group="dtf.policies")} >= {"default", "fifo"}
    assert load_policy("fifo").name == "fifo"
    with pytest.raises(InvalidInput, match="unknown scheduling policy 'nope'"):
        load_policy("nope")


def test_a_missed_deadline_is_flagged_once() -> None:
    task = t("x", 0, deadline=10)
    assert task_agg.decide_deadline(task, now=9, actor="s") == []
    (flag,) = task_agg.decide_deadline(task, now=12, actor="s")
    assert isinstance(flag, TaskDeadlineMissed) and flag.waited_s == 12
    flagged = task_agg.evolve(task, flag, 5)
    assert flagged.deadline_missed
    assert task_agg.decide_deadline(flagged, now=20, actor="s") == []


def test_hardware_affinity_keeps_gpu_workers_for_gpu_tasks() -> None:
    from dtf_core.events.worker import Capabilities
    from dtf_core.placement import Slot, place
    from dtf_core.spec import Requirements

    def slots() -> list[Slot]:
        return [Slot(worker_id="gpu", session="s", slots=4, free=4,
                     capabilities=Capabilities(hardware=("cpu", "cuda"))),
                Slot(worker_id="cpu", session="s", slots=4, free=1,
                     capabilities=Capabilities(hardware=("cpu",)))]

    policy = DefaultPolicy()
    plain = place([("t1", Requirements()), ("t2", Requirements())], slots(),
                  score=policy.score)
    assert [d.worker_id for d in plain] == ["cpu", "gpu"]  # the plain worker first, even busier
    cuda = place([("t", Requirements(hardware=("cuda",)))], slots(), score=policy.score)
    assert cuda[0].worker_id == "gpu"
