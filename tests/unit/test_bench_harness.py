"""The benchmark harness on each kind of workload, in this process (the worker runs it in
a process of its own: tests/integration/test_benchmarks.py)."""

from __future__ import annotations

import sys

import pytest

from agents.worker.bench.harness import measure
from agents.worker.bench.workloads import WorkloadError

JOB = {"workload": "numpy-matmul", "callable": None, "command": None, "batch_sizes": [1, 3],
       "precision": "fp32", "iterations": 4, "warmup": 1}

# A user's benchmark command: it reads the batch size DTF gives it and prints a JSON line
# per iteration (and other output, passed on).
COMMAND = """
import json, os
n = int(os.environ["DTF_BENCH_BATCH_SIZE"])
print("warming up")
for i in range(int(os.environ["DTF_BENCH_ITERATIONS"])):
    print(json.dumps({"wall_s": 0.01 * n, "tokens": 100 * n, "note": "x"}))
"""


def test_a_built_in_workload_is_timed_per_batch_size() -> None:
    out = measure(JOB)
    assert [b["batch_size"] for b in out["batches"]] == [1, 3]
    assert all(len(b["wall_s"]) == 4 and min(b["wall_s"]) > 0 for b in out["batches"])
    assert out["batches"][1]["metrics"]["flop"] == [2.0 * 128**3 * 3] * 4
    assert out["device"] == "cpu" and out["packages"]["numpy"]


def test_a_command_reports_its_own_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    out = measure({**JOB, "workload": "command", "command": [sys.executable, "-c", COMMAND]})
    first, second = out["batches"]
    assert first["wall_s"] == [0.01] * 4 and second["wall_s"] == [0.03] * 4
    assert second["metrics"] == {"tokens": [300.0] * 4}  # numbers only
    assert second["peak_rss_mb"] > 1
    assert capsys.readouterr().out.count("warming up") == 2  # its other output, passed on


def test_what_cannot_run_says_why() -> None:
    with pytest.raises(WorkloadError, match="numpy-matmul has no bf16"):
        measure({**JOB, "precision": "bf16"})
    with pytest.raises(WorkloadError, match='no JSON line with "wall_s"'):
        measure({**JOB, "workload": "command", "command": [sys.executable, "-c", "print(1)"]})
    with pytest.raises(WorkloadError, match="cannot load nosuchmodule:run"):
        measure({**JOB, "workload": "callable:nosuchmodule:run", "callable": "nosuchmodule:run"})
    with pytest.raises(WorkloadError, match="cannot start"):
        measure({**JOB, "workload": "command", "command": ["/no/such/benchmark"]})
