"""Reading the DuckDB tables back: row counts, a hash of every row (to compare two
databases) and tests' median durations. Parameterised: ids are data."""

from __future__ import annotations

import hashlib

import duckdb

from projections.rows import as_timestamp
from projections.schema import TABLES, TEST_RESULTS

_COUNT = {t.name: "SELECT count(*) FROM " + t.name for t in TABLES}  # noqa: S608
_ALL_ROWS = {t.name: "SELECT * FROM " + t.name + " ORDER BY " + ", ".join(t.key)  # noqa: S608
             for t in TABLES}


_DURATIONS = (
    "SELECT test_id, median(execution_time) FROM " + TEST_RESULTS  # noqa: S608
    + " WHERE kind = 'test' AND success AND test_id IN (SELECT unnest(?::VARCHAR[]))"
    + " GROUP BY test_id"
)


# a constant table name; the values are parameters
_FLAKY = (
    "SELECT test_id, count(*) FILTER (WHERE success),"  # noqa: S608
    " count(*) FILTER (WHERE NOT success),"
    " coalesce(list(DISTINCT worker_id ORDER BY worker_id) FILTER (WHERE NOT success"
    " AND worker_id IS NOT NULL), []), epoch(max(timestamp))"
    " FROM " + TEST_RESULTS
    + " WHERE kind = 'test' AND timestamp >= ?"
    + " GROUP BY test_id"
    + " HAVING count(*) FILTER (WHERE success) > 0 AND count(*) FILTER (WHERE NOT success) > 0"
    + " ORDER BY 3 DESC, 5 DESC, 1 LIMIT ?"
)


def flaky_tests(con: duckdb.DuckDBPyConnection, since: float,
                limit: int) -> list[tuple[str, int, int, list[str], float]]:
    """Tests with results since ``since`` (Unix time) that both passed and failed: how
    often each, the workers where they failed, and when last seen; most failures first."""
    rows = con.execute(_FLAKY, [as_timestamp(since), limit]).fetchall()
    return [(str(t), int(p), int(f), [str(w) for w in on], float(last))
            for t, p, f, on, last in rows]


def median_durations(con: duckdb.DuckDBPyConnection, node_ids: list[str]) -> dict[str, float]:
    """The median duration of each test's passing runs (parameterised: ids are data)."""
    rows = con.execute(_DURATIONS, [node_ids]).fetchall()
    return {str(k): float(v) for k, v in rows if v is not None}


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        rows = con.execute(_COUNT[table.name]).fetchall()
        counts[table.name] = int(rows[0][0])
    return counts


def table_hash(con: duckdb.DuckDBPyConnection, chunk: int = 10_000) -> str:
    """A hash of every projected row in key order; ``dtf_meta`` (the read position) is left
    out so that two databases at the same position compare by their rows alone."""
    h = hashlib.sha256()
    for table in TABLES:
        h.update(f"\x00{table.name}\x00".encode())
        cur = con.execute(_ALL_ROWS[table.name])
        while rows := cur.fetchmany(chunk):
            for row in rows:
                h.update(repr(row).encode())
                h.update(b"\n")
    return h.hexdigest()
