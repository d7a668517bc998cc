"""Reading the DuckDB tables back: row counts, a hash of every row (to compare two
databases) and tests' median durations. Parameterised: ids are data."""

from __future__ import annotations

import hashlib
import platform

import duckdb

from projections.rows import as_timestamp
from projections.schema import TABLES, TEST_RESULTS

_COUNT = {t.name: "SELECT count(*) FROM " + t.name for t in TABLES}  # noqa: S608
# Each row hashed by DuckDB (its ``hash`` of the row as a struct, every column and NULL
# included); per table the hashes XORed and summed (a table's rows are unique by key) and
# counted. In SQL: 0.06 s for a million rows, where fetching them into Python took 5 s.
_ROWS_DIGEST = {t.name: "SELECT count(*), bit_xor(hash(r)), sum(hash(r)::HUGEINT) FROM "  # noqa: S608
                + t.name + " r" for t in TABLES}


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


def table_hash(con: duckdb.DuckDBPyConnection) -> str:
    """A hash of every projected row; ``dtf_meta`` (the read position) is left out so that
    two databases at the same position compare by their rows alone. It starts with the
    DuckDB version and the machine's architecture that hashed the rows (``hash_engine``):
    DuckDB's row hash is its own, so only hashes made alike compare."""
    h = hashlib.sha256()
    for table in TABLES:
        count, xor, total = con.execute(_ROWS_DIGEST[table.name]).fetchone() or (0, 0, 0)
        h.update(f"{table.name}:{count}:{xor or 0}:{total or 0}\n".encode())
    return f"duckdb-{duckdb.__version__}-{platform.machine()}:{h.hexdigest()}"


def hash_engine(table_hash_: str) -> str:
    """The DuckDB version a ``table_hash`` was made with."""
    return table_hash_.partition(":")[0]
