"""Flaky tests by hardware and worker, from the per-test results DTF records (every try of
a test, `--dtf-reruns` included): how often each failed, and how often its outcome flipped
between consecutive runs, per hardware type, so that "flaky only on GPU workers" shows."""

from __future__ import annotations

import duckdb
from msgspec import Struct

from projections.rows import as_timestamp

MAX_FLAKY = 200


class FlakyOn(Struct, kw_only=True):
    hardware_type: str
    runs: int
    failures: int
    failure_rate: float
    flip_rate: float  # outcome changes between consecutive runs / (runs - 1)
    workers: list[str]  # where it failed


class FlakyByHardware(Struct, kw_only=True):
    test_id: str
    score: float  # the highest flip rate over its hardware types (0: never flips)
    on: list[FlakyOn]
    only_on: list[str]  # the hardware types where it flips, when others never do


_FLAKY = """
WITH runs AS (
  SELECT test_id, coalesce(hardware_type, '?') AS hw, worker_id, success, timestamp, seq,
         lag(success) OVER (PARTITION BY test_id, coalesce(hardware_type, '?')
                            ORDER BY timestamp, seq) AS prev
  FROM test_results WHERE kind = 'test' AND timestamp >= $since
),
per_hw AS (
  SELECT test_id, hw, count(*) AS n, count(*) FILTER (WHERE NOT success) AS failures,
         count(*) FILTER (WHERE prev IS NOT NULL AND prev <> success) AS flips,
         coalesce(list(DISTINCT worker_id ORDER BY worker_id)
                  FILTER (WHERE NOT success AND worker_id IS NOT NULL), []) AS workers
  FROM runs GROUP BY test_id, hw
),
flaky AS (SELECT test_id FROM per_hw GROUP BY test_id HAVING sum(flips) > 0)
SELECT p.test_id, p.hw, p.n, p.failures, p.flips, p.workers
FROM per_hw p JOIN flaky USING (test_id)
ORDER BY p.test_id, p.hw
"""


def flaky_by_hardware(con: duckdb.DuckDBPyConnection, since: float) -> list[FlakyByHardware]:
    """Tests whose outcome flipped since ``since`` (Unix time), most flips first."""
    by_test: dict[str, list[FlakyOn]] = {}
    for test_id, hw, n, failures, flips, workers in con.execute(
            _FLAKY, {"since": as_timestamp(since)}).fetchall():
        by_test.setdefault(str(test_id), []).append(FlakyOn(
            hardware_type=str(hw), runs=int(n), failures=int(failures),
            failure_rate=failures / n, flip_rate=flips / (n - 1) if n > 1 else 0.0,
            workers=[str(w) for w in workers]))
    out = []
    for test_id, on in by_test.items():
        flipping = [o.hardware_type for o in on if o.flip_rate > 0]
        out.append(FlakyByHardware(test_id=test_id, score=max(o.flip_rate for o in on), on=on,
                             only_on=flipping if len(flipping) < len(on) else []))
    out.sort(key=lambda f: (-f.score, f.test_id))
    return out[:MAX_FLAKY]
