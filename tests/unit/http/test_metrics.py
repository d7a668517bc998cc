"""Metrics from the events: the latency steps of each task, leases and refusals."""

from __future__ import annotations

from prometheus_client import generate_latest

from agents.http.metrics import Metrics


def ev(kind: str, task: str, at: float) -> dict[str, object]:
    return {"type": kind, "kind": "task", "task_id": task, "time": at}


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels or None)


def test_each_step_of_a_task_is_timed_once_and_a_retry_restarts_the_clock() -> None:
    m = Metrics()
    m.observe([ev("submitted", "a", 10.0), ev("leased", "a", 10.5), ev("started", "a", 11.0),
               ev("requeued", "a", 12.0), ev("leased", "a", 13.0), ev("started", "a", 13.5),
               ev("succeeded", "a", 15.0), ev("result_refused", "a", 15.1),
               ev("leased", "b", 1.0)])  # b was submitted before the agent started: no times
    assert sample(m, "dtf_leases_total") == 3
    assert sample(m, "dtf_results_refused_total") == 1
    assert sample(m, "dtf_task_queue_seconds_count") == 2
    assert sample(m, "dtf_task_queue_seconds_sum") == 0.5 + 3.0
    assert sample(m, "dtf_task_start_seconds_sum") == 0.5 + 0.5
    assert sample(m, "dtf_task_run_seconds_sum", outcome="succeeded") == 1.5
    assert sample(m, "dtf_task_total_seconds_sum", outcome="succeeded") == 5.0
    assert sample(m, "dtf_events_total", type="leased") == 3
    assert m.times == {}  # an ended task is forgotten
    assert b"dtf_task_queue_seconds_bucket" in generate_latest(m.registry)
