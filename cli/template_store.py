"""The templates `dtf generate` plans from, in a DuckDB file (default ./templates.duckdb):
``templates`` (every version kept; the newest of each id is used) and ``model_mapping``
(a model name's family, where its name does not tell). SQL is parameterised."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from dtf_core.errors import InvalidInput
from dtf_core.generate import FAMILIES, Family, Kind, Template, render
from dtf_core.ids import validate_id

if TYPE_CHECKING:
    import duckdb

DEFAULT = "templates.duckdb"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS templates (template_id VARCHAR NOT NULL, version INTEGER "
    "NOT NULL, model_family VARCHAR NOT NULL, hardware_type VARCHAR NOT NULL, kind VARCHAR "
    "NOT NULL, content VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, "
    "PRIMARY KEY (template_id, version))",
    "CREATE TABLE IF NOT EXISTS model_mapping (model_name VARCHAR PRIMARY KEY, "
    "model_family VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL)",
)
_LATEST = (
    "SELECT template_id, version, model_family, hardware_type, kind, content FROM templates "
    "QUALIFY version = max(version) OVER (PARTITION BY template_id) ORDER BY template_id")
SAMPLE = {"model_name": "sample-model", "model_family": "text", "hardware_type": "cpu",
          "precision": "fp32", "batch_size": 1}


class TemplateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self, write: bool) -> duckdb.DuckDBPyConnection | None:
        import duckdb  # here: `dtf` starts without loading DuckDB

        if not write and not self.path.exists():
            return None
        con = duckdb.connect(str(self.path), read_only=not write)
        if write:
            for statement in SCHEMA:
                con.execute(statement)
        return con

    def templates(self) -> list[Template]:
        """The newest version of every stored template (none without a file)."""
        con = self._connect(write=False)
        if con is None:
            return []
        try:
            rows = con.execute(_LATEST).fetchall()
        finally:
            con.close()
        return [Template(*row) for row in rows]

    def mapping(self) -> dict[str, str]:
        con = self._connect(write=False)
        if con is None:
            return {}
        try:
            return dict(con.execute(
                "SELECT model_name, model_family FROM model_mapping").fetchall())
        finally:
            con.close()

    def add(self, template_id: str, *, family: str, hardware: str, kind: Kind,
            content: str) -> Template:
        """Store a new version; the content must render to a valid task spec."""
        validate_id(template_id, "template id")
        if family != "*" and family not in FAMILIES:
            raise InvalidInput(f"unknown family {family!r}: one of {', '.join(FAMILIES)}, "
                               "or * for any")
        if hardware != "*":
            validate_id(hardware, "hardware type")
        draft = Template(template_id, 0, family, hardware, kind, content)
        render(draft, {**SAMPLE, "model_family": family if family != "*" else "text"})
        con = self._connect(write=True)
        assert con is not None
        try:
            con.begin()
            [(latest,)] = con.execute("SELECT coalesce(max(version), 0) FROM templates "
                                      "WHERE template_id = ?", [template_id]).fetchall()
            version = int(latest) + 1
            con.execute("INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?, to_timestamp(?))",
                        [template_id, version, family, hardware, kind, content, time.time()])
            con.commit()
        finally:
            con.close()
        return Template(template_id, version, family, hardware, kind, content)

    def map_model(self, model: str, family: Family) -> None:
        if family not in FAMILIES:
            raise InvalidInput(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
        if not model or len(model) > 256:
            raise InvalidInput("a model name is 1 to 256 characters")
        con = self._connect(write=True)
        assert con is not None
        try:
            con.execute("INSERT OR REPLACE INTO model_mapping VALUES (?, ?, to_timestamp(?))",
                        [model, family, time.time()])
        finally:
            con.close()
