"""Reading results while the stack runs: benchmark results by filters, and one read-only
SELECT for readers who want SQL. Run by the projector on a cursor of its own connection
(docs/adr/0011-results-while-running.md).

Filters are parameters, never SQL text. A user's SQL must be one SELECT; it runs in a
READ ONLY transaction on a connection that can reach no file or URL (the projector opens
its database with external access off and the configuration locked), within a time limit.
"""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from dtf_core.errors import InvalidInput
from dtf_core.replies import Cell, ResultsQuery, ResultsTable
from projections.rows import as_timestamp

MAX_ROWS = 100_000
MAX_SQL = 64 * 1024
SQL_TIMEOUT_S = 30.0

# The filters of a ResultsQuery over bench_results ``r`` and one bench_metrics row ``m``
# (parameters: filter_params); every one is off when its parameter is NULL.
FILTERS = """
  AND ($model IS NULL OR r.model = $model)
  AND ($hardware IS NULL OR r.hardware_type = $hardware)
  AND ($precision IS NULL OR r.precision = $precision)
  AND ($batch IS NULL OR m.batch_size = $batch)
  AND ($commit IS NULL OR starts_with(r.commit, $commit))
  AND ($run IS NULL OR r.run_id = $run)
  AND ($task IS NULL OR r.task_id = $task)
  AND ($workload IS NULL OR r.workload = $workload)
  AND ($since IS NULL OR r.timestamp >= $since)
  AND ($until IS NULL OR r.timestamp < $until)
"""


def filter_params(q: ResultsQuery) -> dict[str, object]:
    return {"model": q.model, "hardware": q.hardware, "precision": q.precision,
            "batch": q.batch_size, "commit": q.commit, "run": q.run_id, "task": q.task_id,
            "workload": q.workload, "since": as_timestamp(q.since),
            "until": as_timestamp(q.until)}


# One row per result and batch size: what ran, where, and its wall time and throughput.
_BENCH = """
SELECT r.timestamp, r.run_id, r.task_id, r.name, r.model, r.workload, r.precision,
       m.batch_size, r.hardware_type, r.device, r.worker_id, r.commit, r.fingerprint,
       m.mean AS wall_s_mean, m.median AS wall_s_median, m.p95 AS wall_s_p95,
       m.ci_low AS wall_s_ci_low, m.ci_high AS wall_s_ci_high,
       t.mean AS throughput_mean, p.mean AS peak_rss_mb, r.noisy, r.noise, r.seq
FROM bench_results r
JOIN bench_metrics m ON m.seq = r.seq AND m.name = r.name AND m.metric = 'wall_s'
LEFT JOIN bench_metrics t ON t.seq = r.seq AND t.name = r.name
     AND t.batch_size = m.batch_size AND t.metric = 'throughput'
LEFT JOIN bench_metrics p ON p.seq = r.seq AND p.name = r.name
     AND p.batch_size = m.batch_size AND p.metric = 'peak_rss_mb'
WHERE r.success""" + FILTERS + """
ORDER BY r.timestamp, r.seq, m.batch_size
LIMIT $limit
"""


def cell(value: Any) -> Cell:
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [c if not isinstance(c, list | tuple | dict) else str(c)
                for c in (cell(v) for v in value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # JSON, UUIDs, intervals: their text


def _table(cur: duckdb.DuckDBPyConnection, limit: int) -> ResultsTable:
    columns = [d[0] for d in cur.description or ()]
    rows = cur.fetchmany(limit + 1)
    return ResultsTable(ok=True, columns=columns, rows=[[cell(v) for v in r] for r in rows[:limit]],
                        truncated=len(rows) > limit)


def bench_results(con: duckdb.DuckDBPyConnection, q: ResultsQuery) -> ResultsTable:
    limit = _limit(q.limit)
    cur = con.execute(_BENCH, {**filter_params(q), "limit": limit + 1})
    return _table(cur, limit)


def read_only_sql(con: duckdb.DuckDBPyConnection, sql: str, limit: int,
                  timeout: float = SQL_TIMEOUT_S) -> ResultsTable:
    """One SELECT, read-only, interrupted after ``timeout`` seconds."""
    limit = _limit(limit)
    if len(sql) > MAX_SQL:
        raise InvalidInput(f"the SQL is longer than {MAX_SQL} characters")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidInput(f"invalid SQL: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(s.type.name for s in statements) or "nothing"
        raise InvalidInput(f"--sql takes one SELECT statement (read-only), not {kinds}")
    timer = threading.Timer(timeout, con.interrupt)
    con.execute("BEGIN TRANSACTION READ ONLY")
    timer.start()
    try:
        return _table(con.execute(sql), limit)
    except duckdb.InterruptException:
        raise InvalidInput(f"the query ran past {timeout:g}s and was stopped") from None
    except duckdb.Error as exc:
        raise InvalidInput(f"the query failed: {exc}") from None
    finally:
        timer.cancel()
        con.execute("ROLLBACK")


def answer(con: duckdb.DuckDBPyConnection, q: ResultsQuery) -> ResultsTable:
    return read_only_sql(con, q.sql, q.limit) if q.sql else bench_results(con, q)


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_ROWS:
        raise InvalidInput(f"limit must be between 1 and {MAX_ROWS}")
    return limit
