"""The DuckDB tables folded from the log: their schema, the rows each event changes, and
one transaction per batch that stores those rows together with the last applied sequence.

Row building is pure. ``write_batch``, ``create_tables`` and ``read_last_seq`` take an open
DuckDB connection and do nothing else (reads.py reads the tables back). Table and column
names are constants.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
from msgspec import structs

from dtf_core.errors import Conflict
from dtf_core.events.bench import BenchImported
from dtf_core.events.codec import Event
from dtf_core.events.task import AttemptOutcome, TaskLeased, TaskRequeued, TaskStarted
from dtf_core.events.tests import TestsReported
from dtf_core.task import TaskState
from dtf_core.worker import WorkerState
from projections.bench_rows import BenchRows, bench_rows, imported_rows
from projections.board import Board
from projections.rows import (
    AttemptRow,
    Row,
    as_timestamp,
    none_if_empty,
    outcome_name,
    task_row,
    test_case_rows,
    test_result_row,
    worker_row,
)
from projections.schema import (
    ATTEMPTS,
    BENCH_METRICS,
    BENCH_RESULTS,
    HOSTS,
    LAST_SEQ_KEY,
    META,
    META_TABLE,
    SCHEMA_VERSION,
    TABLES,
    TASKS,
    TEST_RESULTS,
    WORKERS,
    Table,
)

SCHEMA_KEY = "schema"
_ATTEMPT_BASES = (TaskLeased, TaskStarted, AttemptOutcome)
_ATTEMPT_EVENTS: dict[type, bool] = {}  # event class -> does it change an attempt (memo)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_CREATE_META)
    rows = con.execute(_READ_LAST_SEQ, [SCHEMA_KEY]).fetchall()
    if not rows or rows[0][0] != SCHEMA_VERSION:
        for table in TABLES:
            con.execute("DROP TABLE IF EXISTS " + table.name)
        con.execute(_DELETE_META)
        con.execute(_SET_META, [SCHEMA_KEY, SCHEMA_VERSION])
    for table in (*TABLES, META_TABLE):
        key = ", ".join(table.key)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table.name} ({table.columns}, PRIMARY KEY ({key}))"
        )
    con.execute(_INIT_META, [LAST_SEQ_KEY])


# Every statement is built once, here, from the table constants above; no value from input
# ever becomes SQL text (values are parameters).
_INIT_META = "INSERT INTO " + META + " VALUES (?, 0) ON CONFLICT DO NOTHING"  # noqa: S608
_CREATE_META = ("CREATE TABLE IF NOT EXISTS " + META + " (" + META_TABLE.columns
                + ", PRIMARY KEY (key))")
_DELETE_META = "DELETE FROM " + META  # noqa: S608
_SET_META = "INSERT INTO " + META + " VALUES (?, ?)"  # noqa: S608
_READ_LAST_SEQ = "SELECT value FROM " + META + " WHERE key = ?"  # noqa: S608


def read_last_seq(con: duckdb.DuckDBPyConnection) -> int:
    # fetchall, not fetchone: DuckDB 2 keeps an unfinished result open on the connection.
    rows = con.execute(_READ_LAST_SEQ, [LAST_SEQ_KEY]).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


# --- the writer -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """Rows to write in one transaction; ``after_seq`` is the position they continue from."""

    after_seq: int
    last_seq: int
    rows: dict[str, list[Row]]

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values())


@dataclass
class TableWriter:
    """Folds events into its own board and stages the final row of every changed key.

    Events at or below ``stored_seq`` (already in the database) are folded, because later
    rows need the state they built, but stage nothing; events at or below ``position``
    (already folded) are ignored, so a batch applied twice changes nothing.
    """

    stored_seq: int = 0
    board: Board = field(default_factory=Board)
    position: int = 0
    open_attempts: dict[str, AttemptRow] = field(default_factory=dict)
    _staged: dict[str, dict[Any, Row]] = field(default_factory=dict)
    # tasks' latest states, turned into rows once per batch (a task changes several times)
    _tasks: dict[str, TaskState] = field(default_factory=dict)
    _attempts: dict[int, AttemptRow] = field(default_factory=dict)  # by fencing
    _taken: int = 0

    def __post_init__(self) -> None:
        self._taken = max(self._taken, self.stored_seq)

    def fold(self, seq: int, event: Event) -> None:
        if seq <= self.position:
            return
        self.position = seq
        changed = self.board.apply(seq, event)
        stage = seq > self.stored_seq
        if isinstance(event, BenchImported):
            if stage:
                for rows in imported_rows(seq, event):
                    self._stage_rows(rows)
            return
        if isinstance(event, TestsReported):
            if stage:
                self._stage_cases(seq, event)
            return
        if type(changed) is TaskState:
            if stage:
                self._tasks[changed.task_id] = changed
            touches = _ATTEMPT_EVENTS.get(type(event))
            if touches is None:
                touches = _ATTEMPT_EVENTS[type(event)] = isinstance(event, _ATTEMPT_BASES)
            if touches:
                self._fold_attempt(seq, event, changed, stage)
        elif stage and type(changed) is WorkerState:
            self._stage(WORKERS, changed.worker_id, worker_row(changed))

    def _stage_cases(self, seq: int, event: TestsReported) -> None:
        worker = self.board.workers.get(event.worker_id)
        task = self.board.tasks.get(event.task_id)
        for row in test_case_rows(seq, event, task, worker):
            self._stage(TEST_RESULTS, (seq, row[0]), row)

    def skip(self, seq: int) -> None:
        """A record that is not an event (it was dead-lettered) still moves the position."""
        self.position = max(self.position, seq)

    def take(self) -> Pending | None:
        """The staged rows and the position to store with them; None when nothing is new."""
        if self.position <= self._taken:
            return None
        if self._tasks:
            self._staged[TASKS] = {k: task_row(t) for k, t in self._tasks.items()}
            self._tasks = {}
        if self._attempts:
            self._staged[ATTEMPTS] = {k: structs.astuple(a) for k, a in self._attempts.items()}
            self._attempts = {}
        rows = {name: list(staged.values()) for name, staged in self._staged.items() if staged}
        self._staged = {}
        pending = Pending(after_seq=self._taken, last_seq=self.position, rows=rows)
        self._taken = self.position
        return pending

    def stored(self, pending: Pending) -> None:
        """``pending`` is committed: its events are in the database now."""
        self.stored_seq = max(self.stored_seq, pending.last_seq)

    def _stage_bench(self, seq: int, event: AttemptOutcome, task: TaskState) -> None:
        self._stage_rows(bench_rows(seq, event, task))

    def _stage_rows(self, rows: BenchRows) -> None:
        self._stage(BENCH_RESULTS, rows.result[:1] + rows.result[5:6], rows.result)
        for metric in rows.metrics:
            self._stage(BENCH_METRICS, metric[:4], metric)
        self._stage(HOSTS, rows.host[0], rows.host)

    def _stage(self, table: str, key: Any, row: Row) -> None:
        self._staged.setdefault(table, {})[key] = row

    def _fold_attempt(self, seq: int, event: Event, task: TaskState, stage: bool) -> None:
        if isinstance(event, TaskLeased):
            row = AttemptRow(
                task_id=task.task_id,
                attempt=event.attempt,
                worker_id=event.worker_id,
                fencing=seq,
                leased_at=as_timestamp(event.at),
            )
            self.open_attempts[task.task_id] = row
        elif isinstance(event, TaskStarted):
            current = self.open_attempts.get(task.task_id)
            if current is None or current.fencing != event.fencing:
                return
            row = structs.replace(current, started_at=as_timestamp(event.at), outcome="running")
            self.open_attempts[task.task_id] = row
        elif isinstance(event, AttemptOutcome) and event.fencing > 0:
            row = self._end_attempt(event, self.open_attempts.pop(task.task_id, None))
            if stage:
                worker = self.board.workers.get(event.worker_id)
                self._stage(TEST_RESULTS, seq,
                            test_result_row(seq, event, task, worker, row.finished_at))
                if event.benchmark is not None:
                    self._stage_bench(seq, event, task)
        else:
            return
        if stage:  # rows once per batch, as tasks' (an attempt changes several times)
            self._attempts[row.fencing] = row

    @staticmethod
    def _end_attempt(event: AttemptOutcome, current: AttemptRow | None) -> AttemptRow:
        if current is None or current.fencing != event.fencing:
            current = AttemptRow(
                task_id=event.task_id,
                attempt=event.attempt,
                worker_id=none_if_empty(event.worker_id),
                fencing=event.fencing,
            )
        reason = event.reason if isinstance(event, TaskRequeued) else ""
        return structs.replace(
            current,
            started_at=as_timestamp(event.started_at) or current.started_at,
            finished_at=as_timestamp(event.at),
            outcome=outcome_name(event),
            exit_code=event.exit_code,
            duration_s=event.duration_s,
            error=none_if_empty(event.error or reason),
        )


def write_batch(con: duckdb.DuckDBPyConnection, pending: Pending) -> None:
    """Upsert the rows and the new position in one transaction (all or nothing)."""
    con.begin()
    try:
        # Compare-and-set of the position: a batch that does not continue the stored
        # position (a second writer, a replay) changes nothing.
        moved = con.execute(
            f"UPDATE {META} SET value = ? WHERE key = ? AND value = ?",  # noqa: S608 -- constant
            [pending.last_seq, LAST_SEQ_KEY, pending.after_seq],
        ).fetchall()
        if moved != [(1,)]:
            raise Conflict(f"the projection is not at seq {pending.after_seq}: "
                           f"it is at {read_last_seq(con)}")
        for table in TABLES:
            rows = pending.rows.get(table.name)
            if rows:
                insert_rows(con, table, rows)
        con.commit()
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already rolled back
            con.rollback()
        raise


# From this many rows on, a table's rows go in as columns (NumPy object arrays scanned by
# one INSERT ... SELECT): 1.5x as fast as the appender's row-by-row conversion for a
# replay's large batches; the appender is faster for a live batch's few rows. Both store
# the same values (tests/unit/test_tables.py).
COLUMNS_FROM = 2000


def insert_rows(con: duckdb.DuckDBPyConnection, table: Table, rows: list[Row]) -> None:
    """Insert (or upsert, by the table's key) rows in the table's column order."""
    if len(rows) < COLUMNS_FROM:
        with con.appender(table.name, action=table.action) as app:
            app.append_rows(rows)
        return
    source = "dtf_batch_" + table.name
    con.register(source, as_columns(rows))
    try:
        verb = "INSERT OR REPLACE INTO " if table.action == "upsert" else "INSERT INTO "
        con.execute(verb + table.name + " SELECT * FROM " + source)  # noqa: S608 -- constants
    finally:
        con.unregister(source)


def as_columns(rows: list[Row]) -> dict[str, np.ndarray[Any, Any]]:
    """Rows as one object array per column (a list value stays one element)."""
    n = len(rows)
    return {f"c{i}": np.fromiter(col, dtype=object, count=n)
            for i, col in enumerate(zip(*rows, strict=True))}
