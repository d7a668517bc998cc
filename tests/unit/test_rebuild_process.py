"""The projection rebuilt by a child process (what `dtf audit verify` runs) equals the one
rebuilt in this process, batch boundaries and all; a failing child says why."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from agents.control.rebuild_proc import RebuildProcess
from agents.log.port import Record
from dtf_core.errors import DTFError
from dtf_core.events import codec
from projections.reads import table_hash
from projections.tables import TableWriter, create_tables, read_last_seq
from tests.unit.test_tables import apply, numbered, story

pytestmark = pytest.mark.anyio


def records() -> list[Record]:
    out = [Record(seq, codec.subject_of(ev), codec.encode(ev), 0.0)
           for seq, ev in numbered(story())]
    out.insert(5, Record(100, "dtf.evt.task.t9.submitted", b"not an event", 0.0))
    return [Record(i, r.subject, r.data, 0.0) for i, r in enumerate(out, start=1)]


def direct_hash(until: int) -> str:
    con = duckdb.connect()
    create_tables(con)
    writer = TableWriter()
    for rec in records():
        if rec.seq > until:
            break
        try:
            writer.fold(rec.seq, codec.decode(rec.subject, rec.data))
        except codec.UndecodableEvent:
            writer.skip(rec.seq)
    apply(con, writer, [])
    return table_hash(con)


@pytest.mark.parametrize("until", [16, 9])
async def test_the_child_rebuilds_what_a_fold_here_writes(tmp_path: Path, until: int) -> None:
    job = RebuildProcess(tmp_path / "r.duckdb", until)
    await job.open()
    try:
        recs = records()
        for lo in range(0, len(recs), 3):  # in small batches, some past `until`
            await job.feed(recs[lo : lo + 3])
        rebuilt = await job.finish()
    finally:
        await job.close()
    assert rebuilt == direct_hash(until)
    with duckdb.connect(str(tmp_path / "r.duckdb")) as con:
        assert read_last_seq(con) == until


async def test_a_child_that_cannot_open_its_database_says_why(tmp_path: Path) -> None:
    (tmp_path / "r.duckdb").write_text("already here")
    job = RebuildProcess(tmp_path / "r.duckdb", 5)
    with pytest.raises(DTFError, match="exists: rebuild writes a fresh database"):
        await job.open()
    await job.close()


async def test_a_child_killed_midway_is_an_error_not_a_hang(tmp_path: Path) -> None:
    job = RebuildProcess(tmp_path / "r.duckdb", 16)
    await job.open()
    try:
        await job.feed(records()[:4])
        assert job._proc is not None
        job._proc.kill()
        with pytest.raises(DTFError, match="rebuild process"):
            await job.feed(records()[4:8])
            await job.finish()
    finally:
        await job.close()
