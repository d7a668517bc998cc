"""The projector's DuckDB connection reaches no file or URL but its own database."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from agents.control.duckdb_thread import open_db

ESCAPES = [
    "COPY (SELECT 1) TO '{tmp}/out.csv'",
    "ATTACH '{tmp}/other.db'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "INSTALL httpfs",
    "SET enable_external_access = true",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_escapes_are_refused(tmp_path: Path, sql: str) -> None:
    con = open_db(tmp_path / "dtf.duckdb")
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql.format(tmp=tmp_path))
        assert con.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
    finally:
        con.close()
    assert not (tmp_path / "out.csv").exists()
