"""The DuckDB tables as given-events / then-rows, on in-memory databases."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from agents.control.duckdb_thread import DuckDBThread
from agents.control.projector import fold_records
from agents.control.rebuild import rebuild
from agents.log.memory import MemoryLog
from agents.log.port import Append, Record
from dtf_core.errors import Conflict, Unavailable
from dtf_core.events import codec
from dtf_core.events.codec import Event
from dtf_core.events.task import (
    ResultRefused,
    TaskCancelled,
    TaskFailed,
    TaskLeased,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
)
from dtf_core.events.worker import Capabilities, WorkerRegistered, WorkerStopped
from dtf_core.spec import Requirements, TaskSpec
from projections.reads import table_counts, table_hash
from projections.tables import (
    TableWriter,
    create_tables,
    read_last_seq,
    write_batch,
)

T0 = 1_700_000_000.0
A = "tester"


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    create_tables(c)
    yield c
    c.close()


def story() -> list[Event]:
    """Worker w1 registers; t1 fails once (requeued) then succeeds; t2 is cancelled queued;
    t3 times out; a stale report on t1 is refused; w1 stops."""
    caps = Capabilities(cpu_count=8, memory_gb=32.0, platform="linux", machine="x86_64",
                        hardware=("cpu", "cuda"))
    bench = TaskSpec(type="benchmark", name="bench_bert", priority=5, config={"model": "bert"},
                     requirements=Requirements(hardware=("cuda",)))
    return [
        WorkerRegistered(worker_id="w1", session="s1", hostname="h1", pid=42, slots=2,
                         capabilities=caps, at=T0, actor=A),                          # 1
        TaskSubmitted(task_id="t1", spec=bench, run_id="r1", at=T0 + 1, actor=A),      # 2
        TaskLeased(task_id="t1", worker_id="w1", session="s1", attempt=1, at=T0 + 2,
                   actor=A),                                                          # 3
        TaskStarted(task_id="t1", attempt=1, fencing=3, worker_id="w1", at=T0 + 3,
                    actor=A),                                                         # 4
        TaskRequeued(task_id="t1", attempt=1, fencing=3, worker_id="w1", exit_code=1,
                     duration_s=2.0, error="boom", reason="failed", at=T0 + 5,
                     actor=A),                                                        # 5
        TaskLeased(task_id="t1", worker_id="w1", session="s1", attempt=2, at=T0 + 6,
                   actor=A),                                                          # 6
        TaskStarted(task_id="t1", attempt=2, fencing=6, worker_id="w1", at=T0 + 7,
                    actor=A),                                                         # 7
        TaskSucceeded(task_id="t1", attempt=2, fencing=6, worker_id="w1", exit_code=0,
                      duration_s=1.5, max_rss_mb=100.0, at=T0 + 9, actor=A),          # 8
        TaskSubmitted(task_id="t2", spec=TaskSpec(type="noop"), at=T0 + 10, actor=A),  # 9
        TaskCancelled(task_id="t2", error="user", at=T0 + 11, actor=A),               # 10
        TaskSubmitted(task_id="t3", spec=TaskSpec(type="noop"), at=T0 + 12, actor=A),  # 11
        TaskLeased(task_id="t3", worker_id="w1", session="s1", attempt=1, at=T0 + 13,
                   actor=A),                                                          # 12
        TaskTimedOut(task_id="t3", attempt=1, fencing=12, worker_id="w1", exit_code=-9,
                     duration_s=30.0, error="timeout", at=T0 + 43, actor=A),          # 13
        ResultRefused(task_id="t1", fencing=3, worker_id="w1", outcome="failed",
                      reason="stale", at=T0 + 44, actor=A),                           # 14
        WorkerStopped(worker_id="w1", session="s1", at=T0 + 50, actor=A),             # 15
    ]


def numbered(events: list[Event], first: int = 1) -> list[tuple[int, Event]]:
    return list(enumerate(events, start=first))


def apply(con: duckdb.DuckDBPyConnection, writer: TableWriter,
          batch: list[tuple[int, Event]]) -> None:
    for seq, event in batch:
        writer.fold(seq, event)
    pending = writer.take()
    if pending is not None:
        write_batch(con, pending)
        writer.stored(pending)


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)  # the tables hold naive UTC


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.execute(sql).fetchall()


def test_rows_after_the_story(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, TableWriter(), numbered(story()))
    assert read_last_seq(con) == 15
    assert table_counts(con) == {"tasks": 3, "attempts": 3, "workers": 1, "test_results": 3,
                                 "bench_results": 0, "bench_metrics": 0, "hosts": 0}
    t1 = rows(con, "SELECT * FROM tasks WHERE task_id = 't1'")[0]
    assert t1 == ("t1", "benchmark", "bench_bert", "succeeded", 5, "r1", 2, "w1", ts(T0 + 1),
                  ts(T0 + 7), ts(T0 + 9), 0, None, 14)
    t2 = rows(con, "SELECT status, attempt, worker_id, error FROM tasks WHERE task_id = 't2'")
    assert t2 == [("cancelled", 0, None, "user")]
    attempts = rows(con, "SELECT * FROM attempts ORDER BY task_id, attempt")
    assert attempts == [
        ("t1", 1, "w1", 3, ts(T0 + 2), ts(T0 + 3), ts(T0 + 5), "requeued", 1, 2.0, "boom"),
        ("t1", 2, "w1", 6, ts(T0 + 6), ts(T0 + 7), ts(T0 + 9), "succeeded", 0, 1.5, None),
        ("t3", 1, "w1", 12, ts(T0 + 13), None, ts(T0 + 43), "timed_out", -9, 30.0, "timeout"),
    ]
    assert rows(con, "SELECT * FROM workers") == [
        ("w1", "s1", "h1", 42, 2, "stopped", "linux", "x86_64", 8, 32.0, ["cpu", "cuda"],
         ts(T0), 15)
    ]


def test_one_test_result_per_attempt_outcome(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, TableWriter(), numbered(story()))
    results = rows(con, "SELECT seq, task_id, attempt, test_id, worker_id, model_name, "
                        "hardware_type, execution_time, success, error_message, timestamp, "
                        "memory_usage FROM test_results ORDER BY seq")
    assert results == [
        # the hardware the task required and the worker had; a task needing none ran on cpu
        (5, "t1", 1, "bench_bert", "w1", "bert", "cuda", 2.0, False, "boom", ts(T0 + 5), None),
        (8, "t1", 2, "bench_bert", "w1", "bert", "cuda", 1.5, True, None, ts(T0 + 9), 100.0),
        (13, "t3", 1, "t3", "w1", None, "cpu", 30.0, False, "timeout", ts(T0 + 43), None),
    ]
    details = [json.loads(str(d)) for (d,) in
               rows(con, "SELECT details FROM test_results ORDER BY seq")]
    assert details[0] == {"outcome": "requeued", "exit_code": 1, "attempt": 1,
                          "task_type": "benchmark", "fencing": 3, "reason": "failed"}
    assert details[1]["outcome"] == "succeeded" and details[2]["outcome"] == "timed_out"


def test_failed_and_cancelled_under_a_lease_are_results_too(
    con: duckdb.DuckDBPyConnection,
) -> None:
    events: list[Event] = [
        TaskSubmitted(task_id="a", spec=TaskSpec(type="noop"), at=T0, actor=A),
        TaskLeased(task_id="a", worker_id="w9", session="s", attempt=1, at=T0, actor=A),
        TaskFailed(task_id="a", attempt=1, fencing=2, worker_id="w9", at=T0 + 1, actor=A),
        TaskSubmitted(task_id="b", spec=TaskSpec(type="noop"), at=T0, actor=A),
        TaskLeased(task_id="b", worker_id="w9", session="s", attempt=1, at=T0, actor=A),
        TaskCancelled(task_id="b", attempt=1, fencing=5, worker_id="w9", at=T0 + 1, actor=A),
    ]
    apply(con, TableWriter(), numbered(events))
    assert rows(con, "SELECT seq, success, hardware_type FROM test_results ORDER BY seq") == [
        (3, False, None), (6, False, None)]
    assert rows(con, "SELECT outcome FROM attempts ORDER BY task_id") == [
        ("failed",), ("cancelled",)]


def test_a_batch_stages_one_row_per_key() -> None:
    writer = TableWriter()
    for seq, event in numbered(story()):
        writer.fold(seq, event)
    pending = writer.take()
    assert pending is not None
    assert (pending.after_seq, pending.last_seq) == (0, 15)
    assert {k: len(v) for k, v in pending.rows.items()} == {
        "workers": 1, "tasks": 3, "attempts": 3, "test_results": 3}
    assert writer.take() is None


def test_the_same_batch_twice_changes_nothing(con: duckdb.DuckDBPyConnection) -> None:
    writer = TableWriter()
    batch = numbered(story())
    apply(con, writer, batch)
    before = (table_hash(con), table_counts(con))
    apply(con, writer, batch)
    assert writer.take() is None
    # A restarted projector: a fresh board folded from seq 1, the position read from the table.
    apply(con, TableWriter(stored_seq=read_last_seq(con)), batch)
    assert (table_hash(con), table_counts(con)) == before
    assert read_last_seq(con) == 15


def test_batch_boundaries_do_not_change_the_tables() -> None:
    events = numbered(story())
    hashes = set()
    for size in (1, 2, 4, 7, len(events)):
        c = duckdb.connect()
        create_tables(c)
        writer = TableWriter()
        for i in range(0, len(events), size):
            apply(c, writer, events[i : i + size])
        hashes.add(table_hash(c))
        c.close()
    assert len(hashes) == 1


def test_restart_in_the_middle_writes_only_the_rest(con: duckdb.DuckDBPyConnection) -> None:
    events = numbered(story())
    apply(con, TableWriter(), events[:6])
    assert read_last_seq(con) == 6
    restarted = TableWriter(stored_seq=6)
    for seq, event in events:
        restarted.fold(seq, event)
    pending = restarted.take()
    assert pending is not None
    assert pending.rows["tasks"] and all(r[13] > 6 for r in pending.rows["tasks"])
    assert [r[10] for r in pending.rows["test_results"]] == [8, 13]
    write_batch(con, pending)
    full = duckdb.connect()
    create_tables(full)
    apply(full, TableWriter(), events)
    assert table_hash(con) == table_hash(full)


def test_a_stale_batch_is_refused_whole(con: duckdb.DuckDBPyConnection) -> None:
    events = numbered(story())
    first, second = TableWriter(), TableWriter()
    apply(con, first, events[:4])
    for seq, event in events:
        second.fold(seq, event)
    pending = second.take()
    assert pending is not None
    with pytest.raises(Conflict):
        write_batch(con, pending)  # continues seq 0, but the table is at 4
    assert read_last_seq(con) == 4
    assert table_counts(con)["test_results"] == 0


def test_records_that_are_not_events_are_skipped_and_reported() -> None:
    writer = TableWriter()
    good = story()[0]
    records = [
        Record(seq=1, subject=codec.subject_of(good), data=codec.encode(good), time=0.0),
        Record(seq=2, subject="dtf.evt.task.x.submitted", data=b"\xc1garbage", time=0.0),
        Record(seq=3, subject="dtf.evt.task.x.submitted", data=codec.encode(good), time=0.0),
    ]
    failures = fold_records(writer, records)
    assert [r.seq for r, _ in failures] == [2, 3]
    assert writer.position == 3 and "w1" in writer.board.workers
    assert fold_records(writer, records) == []  # already folded


@pytest.mark.anyio
async def test_rebuild_from_a_memory_log_equals_the_direct_fold(tmp_path: Path) -> None:
    log = MemoryLog()
    events = story()
    for ev in events:
        await log.append([Append(subject=codec.subject_of(ev), data=codec.encode(ev),
                                 msg_id=codec.msg_id_of(ev))])
    direct = duckdb.connect()
    create_tables(direct)
    apply(direct, TableWriter(), numbered(events))
    assert await rebuild(log, tmp_path / "r.duckdb") == table_hash(direct)
    assert await rebuild(log, None) == table_hash(direct)  # in memory: the same rows
    partial = await rebuild(log, tmp_path / "r8.duckdb", until_seq=8)
    assert partial != table_hash(direct)
    with duckdb.connect(str(tmp_path / "r8.duckdb")) as c:
        assert read_last_seq(c) == 8
        assert table_counts(c)["test_results"] == 2


@pytest.mark.anyio
async def test_a_cancelled_call_still_finishes_before_the_close(tmp_path: Path) -> None:
    db = DuckDBThread(tmp_path / "x.duckdb")
    await db.open()
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(con: duckdb.DuckDBPyConnection) -> None:
        started.set()
        release.wait(10)
        con.execute("SELECT 1").fetchall()
        order.append("call done")

    caller = asyncio.create_task(db.call(slow))
    assert await asyncio.to_thread(started.wait, 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    closing = asyncio.create_task(db.close())
    done, _ = await asyncio.wait({closing}, timeout=0.1)
    assert not done, "the close must wait for the call the cancelled caller left running"
    release.set()
    await closing
    assert order == ["call done"]
    with pytest.raises(Unavailable):
        await db.call(read_last_seq)


def test_flaky_tests_both_passed_and_failed_since_a_time(
        con: duckdb.DuckDBPyConnection) -> None:
    from dtf_core.events.tests import TestCase, TestsReported
    from projections.reads import flaky_tests

    def reported(seq: int, worker: str, at: float, **outcomes: str) -> tuple[int, Event]:
        cases = tuple(TestCase(nodeid=f"t.py::{n}", outcome=o)  # type: ignore[arg-type]
                      for n, o in outcomes.items())
        return seq, TestsReported(run_id="r1", task_id=f"c{seq}", worker_id=worker,
                                  attempt=1, fencing=seq, batch=1, cases=cases, at=at,
                                  actor=worker)

    writer = TableWriter()
    apply(con, writer, [
        reported(1, "w9", T0 - 100, old="failed"),  # before the window: not counted
        reported(2, "w1", T0 + 1, a="passed", b="passed", c="failed", old="passed"),
        reported(3, "w2", T0 + 2, a="failed", b="passed", c="error"),
        reported(4, "w3", T0 + 3, c="passed", d="skipped"),
    ])
    assert flaky_tests(con, T0, 10) == [
        ("t.py::c", 1, 2, ["w1", "w2"], T0 + 3),
        ("t.py::a", 1, 1, ["w2"], T0 + 2),
    ]
    assert flaky_tests(con, T0, 1) == [("t.py::c", 1, 2, ["w1", "w2"], T0 + 3)]
    assert flaky_tests(con, T0 + 2.5, 10) == []


@pytest.mark.parametrize("split", [0, 5, 9])
def test_rows_in_columns_are_the_rows_the_appender_writes(
        monkeypatch: pytest.MonkeyPatch, split: int) -> None:
    """Large batches go in as columns, small ones through the appender: the same values
    either way, in every table, inserted and upserted (a second batch changes rows)."""
    from projections import tables
    from projections.schema import TABLES
    from tests.unit.test_codec import EVENTS

    events = numbered(story() + [e for e, _ in EVENTS])
    seen = []
    for columns_from in (10**9, 0):
        monkeypatch.setattr(tables, "COLUMNS_FROM", columns_from)
        c = duckdb.connect()
        create_tables(c)
        writer = TableWriter()
        for batch in (events[:split], events[split:]):
            apply(c, writer, batch)
        seen.append((table_hash(c), {t.name: sorted(rows(c, f"SELECT * FROM {t.name}"),
                                                     key=repr) for t in TABLES}))
        c.close()
    assert all(seen[0][1].values()), "every table has rows to compare"
    assert seen[0] == seen[1]


def test_details_keys_are_sorted_for_every_kind_of_outcome() -> None:
    """``details`` is JSON with sorted keys (as the older system's json.dumps wrote it),
    for a plain outcome, a requeue (its reason) and a benchmark (its workload and noise)."""
    from types import SimpleNamespace

    from msgspec import structs

    from dtf_core.task import TaskState
    from projections.rows import test_result_row

    task = TaskState(task_id="t1", spec=TaskSpec(type="noop"))
    done = TaskSucceeded(task_id="t1", attempt=1, fencing=3, worker_id="w1", at=T0, actor=A)
    bench = structs.replace(done, benchmark=SimpleNamespace(  # only what the row reads
        workload="w", noisy=["load"], hardware_type="cpu"))
    again = TaskRequeued(task_id="t1", attempt=1, fencing=3, worker_id="w1", reason="lost",
                         at=T0, actor=A)
    for event, extra in ((done, set()), (bench, {"noisy", "workload"}), (again, {"reason"})):
        keys = list(json.loads(test_result_row(9, event, task, None)[9]))  # type: ignore[arg-type]
        assert keys == sorted(keys) and extra <= set(keys), keys


def test_a_projection_of_an_older_schema_is_dropped_and_folded_again(tmp_path: Path) -> None:
    """Schema 4 keyed ``attempts`` by (task_id, attempt): its file is emptied, back to
    seq 0, so the projector folds the log again into the new tables (ADR 0024)."""
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as old:
        old.execute("CREATE TABLE dtf_meta (key VARCHAR NOT NULL, value BIGINT, "
                    "PRIMARY KEY (key))")
        old.execute("INSERT INTO dtf_meta VALUES ('schema', 4), ('last_seq', 42)")
        old.execute("CREATE TABLE attempts (task_id VARCHAR NOT NULL, attempt INTEGER NOT "
                    "NULL, fencing BIGINT, PRIMARY KEY (task_id, attempt))")
        old.execute("INSERT INTO attempts VALUES ('t-1', 1, 7)")
    with duckdb.connect(path) as con:
        create_tables(con)
        assert read_last_seq(con) == 0
        assert con.execute("SELECT count(*) FROM attempts").fetchall() == [(0,)]
        keys = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = 'attempts' AND constraint_type = 'PRIMARY KEY'").fetchall()
        assert keys == [(["fencing"],)]
