"""A synthetic benchmark history as events: series of benchmark results with realistic
noise (log-normal spread and rare slow outliers) and, where asked, a step (a regression)
at a known point. Used by the statistics tests, the CI report test and bench/analytics.py.
Only the numbers are synthetic: the events, the projection and the analysis are the real
ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtf_core.benchmarks import (
    BatchResult,
    BenchResult,
    HostState,
    Provenance,
    summarize,
)
from dtf_core.events.codec import Event
from dtf_core.events.task import TaskLeased, TaskSubmitted, TaskSucceeded
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.spec import TaskSpec

T0 = 1_780_000_000.0  # the first result's time
HOST = HostState(load1=0.1, cpu_count=2)


@dataclass
class Story:
    """``series`` models, ``points`` results each, one a day (``every`` seconds apart);
    each result from run ``run-<i>``. ``step`` multiplies the wall times of the models in
    ``stepped`` from result ``step_at`` on."""

    series: int = 3
    points: int = 60
    iterations: int = 10
    step_at: int = 30
    step: float = 1.10
    stepped: tuple[int, ...] = (0,)
    every: float = 86400.0
    cv: float = 0.03
    outliers: float = 0.02
    seed: int = 0


def noisy(rng: np.random.Generator, n: int, base: float, cv: float,
          outliers: float) -> np.ndarray:
    x = base * rng.lognormal(0.0, cv, n)
    slow = rng.random(n) < outliers
    x[slow] *= 1 + rng.uniform(0.1, 0.4, int(slow.sum()))
    return x


def result(model: str, walls: np.ndarray, batch: int = 8, commit: str = "") -> BenchResult:
    w = [float(v) for v in walls]
    return BenchResult(
        workload="numpy-matmul", model=model, precision="fp32", device="cpu",
        hardware_type="cpu",
        batches=[BatchResult(batch_size=batch, wall_s=summarize(w),
                             throughput=summarize([batch / v for v in w]),
                             peak_rss_mb=100.0, samples=w)],
        before=HOST, after=HOST,
        provenance=Provenance(fingerprint="0123456789abcdef", cpu_model="bench cpu",
                              commit=commit))


def commit_of(point: int) -> str:
    """The commit the ``point``-th result of a story was measured at (one per point)."""
    return f"{point + 1:040x}"


def history(story: Story) -> list[Event]:
    rng = np.random.default_rng(story.seed)
    caps = Capabilities(cpu_count=2, memory_gb=8.0, hardware=("cpu",))
    events: list[Event] = [WorkerRegistered(worker_id="w1", session="s", hostname="h", pid=1,
                                            slots=1, capabilities=caps, at=T0, actor="bench")]
    for i in range(story.points):
        at = T0 + i * story.every
        for m in range(story.series):
            base = 0.010 * (m + 1)
            walls = noisy(rng, story.iterations, base, story.cv, story.outliers)
            if m in story.stepped and i >= story.step_at:
                walls *= story.step
            tid = f"b{i}-{m}"
            lease_seq = len(events) + 2  # the events are numbered from 1, in this order
            spec = TaskSpec(type="benchmark", name=f"bench-m{m}", config={"model": f"m{m}"})
            events += [
                TaskSubmitted(task_id=tid, spec=spec, run_id=f"run-{i}", at=at, actor="bench"),
                TaskLeased(task_id=tid, worker_id="w1", session="s", attempt=1, at=at,
                           actor="bench"),
                TaskSucceeded(task_id=tid, attempt=1, fencing=lease_seq, worker_id="w1",
                              exit_code=0, duration_s=float(walls.sum()), at=at + 1,
                              actor="bench", benchmark=result(f"m{m}", walls,
                                                              commit=commit_of(i))),
            ]
    return events


def pytest_history(chunks: int, batches: int = 10, cases: int = 200, seed: int = 0,
                   fail_rate: float = 0.01) -> list[Event]:
    """A distributed pytest run's events: each chunk a test task whose worker reports its
    tests in ``batches`` batches of ``cases`` results (as the outbox sends them), then
    succeeds or fails."""
    from dtf_core.events.task import TaskFailed
    from dtf_core.events.tests import TestCase, TestsReported

    rng = np.random.default_rng(seed)
    caps = Capabilities(cpu_count=2, memory_gb=8.0, hardware=("cpu",))
    events: list[Event] = [WorkerRegistered(worker_id="w1", session="s", hostname="h", pid=1,
                                            slots=2, capabilities=caps, at=T0, actor="bench")]
    spec = TaskSpec(type="test", config={"node_ids": ["tests/test_x.py::test_0"]})
    for c in range(chunks):
        at = T0 + c
        tid = f"chunk-{c}"
        lease_seq = len(events) + 2
        events += [TaskSubmitted(task_id=tid, spec=spec, run_id="run-1", at=at, actor="bench"),
                   TaskLeased(task_id=tid, worker_id="w1", session="s", attempt=1, at=at,
                              actor="bench")]
        failed = False
        for b in range(batches):
            outcomes = rng.random(cases) < fail_rate
            failed |= bool(outcomes.any())
            events.append(TestsReported(
                run_id="run-1", task_id=tid, at=at + 0.5, actor="bench", worker_id="w1",
                attempt=1, fencing=lease_seq, batch=b, cases=tuple(
                    TestCase(nodeid=f"tests/test_m{c}.py::test_{b}_{i}",
                             outcome="failed" if bad else "passed",
                             duration_s=float(rng.exponential(0.01)),
                             message="assert 1 == 2" if bad else "")
                    for i, bad in enumerate(outcomes))))
        end = TaskFailed if failed else TaskSucceeded
        events.append(end(task_id=tid, attempt=1, fencing=lease_seq, worker_id="w1",
                          exit_code=int(failed), duration_s=1.0, at=at + 1, actor="bench"))
    return events
