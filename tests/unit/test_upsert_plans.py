"""The projector's upserts find a batch's rows through the primary key's index, not by
reading the whole table (bench/upserts.py): the projector's DuckDB settings hand the scan
a batch's keys (``dynamic_or_filter_threshold``), and every upserted table has a
one-column key (``attempts``: ``fencing``, schema 5)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from agents.control.duckdb_thread import HARDENED, OR_FILTER_KEYS
from bench.upserts import attempt_row, filled, task_row
from projections import tables
from projections.schema import ATTEMPTS, TABLES, TASKS, table

ROWS = 300_000  # three of DuckDB's row groups (122,880 rows each)
BATCH = 200  # more keys than DuckDB's default threshold (50), fewer than ours


def upsert_plan(con: duckdb.DuckDBPyConnection, table: str,
                rows: list[tuple[object, ...]]) -> str:
    """DuckDB's plan, as run, of the upsert ``insert_rows`` makes of a large batch (the
    appender's upsert of a small one is planned the same way: bench/upserts.py)."""
    con.register("batch", tables.as_columns(rows))
    plan = con.execute(
        f"EXPLAIN ANALYZE INSERT OR REPLACE INTO {table} SELECT * FROM batch").fetchall()
    con.unregister("batch")
    return str(plan[0][1])


def test_every_upserted_table_has_a_one_column_key() -> None:
    assert [t.name for t in TABLES if t.action == "upsert" and len(t.key) != 1] == []
    assert BATCH < OR_FILTER_KEYS


@pytest.mark.parametrize(("name", "make"), [(TASKS, task_row), (ATTEMPTS, attempt_row)])
def test_an_upsert_reads_only_the_row_groups_of_its_keys(
        tmp_path: Path, name: str, make: Callable[[int, str], tuple[object, ...]]) -> None:
    con = filled(tmp_path / "p.duckdb", dict(HARDENED), table(name), make, ROWS)
    plan = upsert_plan(con, name, [make(i, "failed") for i in range(0, ROWS, ROWS // BATCH)])
    scanned = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert scanned, plan
    assert int(scanned.group(1)) < int(scanned.group(2)), plan
    con.close()
