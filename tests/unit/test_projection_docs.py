"""docs/projections.md shows each DuckDB table with its real key and every column
(issue 13: it gave `test_results` the wrong key and left out `kind` and `run_id`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from projections.schema import TABLES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "projections.md").read_text()


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_the_doc_row_of_each_table_has_its_key_and_columns(table) -> None:  # type: ignore[no-untyped-def]
    row = next(line for line in DOC.splitlines() if line.startswith(f"| `{table.name}` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    key = table.key[0] if len(table.key) == 1 else f"({', '.join(table.key)})"
    assert cells[1] == f"`{key}`", row
    columns = {m.split()[0] for m in re.split(r",\s*", " ".join(table.columns.split()))}
    named = set(re.findall(r"[a-z_0-9]+", cells[3])) | set(table.key)
    assert columns <= named, sorted(columns - named)
