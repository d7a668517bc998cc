"""The DuckDB tables' schema: names, columns and keys. Column order is the order of the rows
built in rows.py and bench_rows.py.

A change to a table bumps SCHEMA_VERSION: the projector then drops the tables and folds
the log again (the log is the source, the tables are derived; docs/adr/0011).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TASKS = "tasks"
ATTEMPTS = "attempts"
WORKERS = "workers"
TEST_RESULTS = "test_results"
META = "dtf_meta"
LAST_SEQ_KEY = "last_seq"
BENCH_RESULTS = "bench_results"
BENCH_METRICS = "bench_metrics"
HOSTS = "hosts"

@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: str
    key: tuple[str, ...]
    # "insert" for rows that are never changed again: half the cost of an upsert, and a
    # doubled row would fail the batch instead of passing silently.
    action: Literal["insert", "upsert"] = "upsert"


TABLES: tuple[Table, ...] = (
    Table(
        TASKS,
        """task_id VARCHAR NOT NULL, type VARCHAR, name VARCHAR, status VARCHAR,
        priority INTEGER, run_id VARCHAR, attempt INTEGER, worker_id VARCHAR,
        submitted_at TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP,
        exit_code INTEGER, error VARCHAR, last_seq BIGINT""",
        ("task_id",),
    ),
    # Keyed by the lease's sequence (``fencing``): one lease per attempt, so it names the
    # attempt as (task_id, attempt) does, and as a single column it lets DuckDB find a
    # batch's rows through the key's index (a two-column key made each upsert scan the
    # whole table: bench/upserts.py).
    Table(
        ATTEMPTS,
        """task_id VARCHAR NOT NULL, attempt INTEGER NOT NULL, worker_id VARCHAR,
        fencing BIGINT NOT NULL, leased_at TIMESTAMP, started_at TIMESTAMP,
        finished_at TIMESTAMP, outcome VARCHAR, exit_code INTEGER, duration_s DOUBLE,
        error VARCHAR""",
        ("fencing",),
    ),
    Table(
        WORKERS,
        """worker_id VARCHAR NOT NULL, session VARCHAR, hostname VARCHAR, pid INTEGER,
        slots INTEGER, status VARCHAR, platform VARCHAR, machine VARCHAR, cpu_count INTEGER,
        memory_gb DOUBLE, hardware VARCHAR[], registered_at TIMESTAMP, last_seq BIGINT""",
        ("worker_id",),
    ),
    Table(
        TEST_RESULTS,
        """test_id VARCHAR, worker_id VARCHAR, model_name VARCHAR, hardware_type VARCHAR,
        execution_time DOUBLE, success BOOLEAN, error_message VARCHAR, timestamp TIMESTAMP,
        memory_usage DOUBLE, details JSON, seq BIGINT NOT NULL, task_id VARCHAR,
        attempt INTEGER, kind VARCHAR NOT NULL, run_id VARCHAR""",
        ("seq", "test_id"),
        action="insert",
    ),
    # A benchmark result: what ran, where, on what host, and how quiet it was; one per
    # benchmark attempt (``source`` dtf) or per imported benchmark (``source`` the tool).
    Table(
        BENCH_RESULTS,
        """seq BIGINT NOT NULL, task_id VARCHAR, attempt INTEGER, run_id VARCHAR,
        worker_id VARCHAR, name VARCHAR, model VARCHAR, workload VARCHAR, precision VARCHAR,
        device VARCHAR, hardware_type VARCHAR, fingerprint VARCHAR, commit VARCHAR,
        success BOOLEAN, exclusive BOOLEAN, noisy BOOLEAN, noise VARCHAR,
        other_cores DOUBLE, load_before DOUBLE, load_after DOUBLE, freq_before DOUBLE,
        freq_after DOUBLE, governor VARCHAR, packages JSON, timestamp TIMESTAMP,
        source VARCHAR""",
        ("seq", "name"),
        action="insert",
    ),
    # One metric of one batch size of a result (wall_s, throughput, peak_rss_mb, and the
    # workload's own), summarised; ``samples`` holds wall_s's kept samples.
    Table(
        BENCH_METRICS,
        """seq BIGINT NOT NULL, name VARCHAR NOT NULL, batch_size INTEGER NOT NULL,
        metric VARCHAR NOT NULL, n INTEGER, mean DOUBLE, median DOUBLE, p95 DOUBLE,
        std DOUBLE, ci_low DOUBLE, ci_high DOUBLE, min DOUBLE, max DOUBLE, samples DOUBLE[]""",
        ("seq", "name", "batch_size", "metric"),
        action="insert",
    ),
    # A hardware fingerprint and what it stands for (the newest result's view of it).
    Table(
        HOSTS,
        """fingerprint VARCHAR NOT NULL, cpu_model VARCHAR, gpus VARCHAR[], os VARCHAR,
        python VARCHAR, last_seen TIMESTAMP""",
        ("fingerprint",),
    ),
)
META_TABLE = Table(META, "key VARCHAR NOT NULL, value BIGINT", ("key",))


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


# Bump when a table changes: the projection is then rebuilt from the log, its source.
SCHEMA_VERSION = 5


