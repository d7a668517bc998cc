"""The projector agent: folds the log into DuckDB tables and answers reads about them.

Rows and the last applied sequence are written in one transaction per batch, so a crash or
a replay never applies an event twice. DuckDB lets one process open the file, so while the
projector runs, reads go through it over request/reply on ``dtf.q.projector``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import duckdb
import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.control import faults
from agents.control.answers import reply
from agents.control.duckdb_thread import DuckDBThread, to_the_end
from agents.control.pacing import Pacer
from agents.log.fold import jetstream_dead_letter
from agents.log.jetstream import JetStreamLog
from agents.log.port import EventLog, Record
from agents.nats.reading import reads_held
from dtf_core import subjects
from dtf_core.errors import InvalidInput
from dtf_core.events.codec import Event, UndecodableEvent, decode
from dtf_core.replies import (
    Durations,
    FlakyTest,
    FlakyTests,
    ProjectorStatus,
    ResultsQuery,
    ResultsTable,
)
from dtf_core.spec import NODE_ID_MAX
from projections.reads import flaky_tests, median_durations, table_counts, table_hash
from projections.results import answer as results_answer
from projections.tables import (
    TableWriter,
    read_last_seq,
    write_batch,
)
from projections.trends import TrendQuery, TrendReport, trends

log = logging.getLogger(__name__)

AGENT = "projector"
QUEUE_GROUP = "dtf-projector"
# Each batch is one DuckDB transaction, and a transaction costs 4 ms of CPU (up to 30 on a
# slower machine) whatever it holds (one upserted row: 4 ms; 300: 7 ms). Once caught up,
# the projector writes at most every WRITE_EVERY_S (longer apart while the batches are
# small, pacing.py), so a live run's transactions carry more: 20k tasks through the stack
# cost the projector 30-45 % less CPU and run 8-20 % faster (docs/performance.md).
# Reads do not see the lag: they wait for what the log held when asked (pacing.py).
# A catch-up writes batch after batch.
WRITE_EVERY_S = 0.15
T = TypeVar("T")
UNSUBSCRIBE_S = 2.0


class Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    op: Literal["status", "hash"]


_query_decoder = msgspec.json.Decoder(Query)


class DurationsQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node_ids: Annotated[list[Annotated[str, msgspec.Meta(max_length=NODE_ID_MAX)]],
                        msgspec.Meta(max_length=5000)]


_durations_decoder = msgspec.json.Decoder(DurationsQuery)


class FlakyQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    since: Annotated[float, msgspec.Meta(ge=0)]  # Unix time
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


_flaky_decoder = msgspec.json.Decoder(FlakyQuery)
_results_decoder = msgspec.json.Decoder(ResultsQuery)
_trends_decoder = msgspec.json.Decoder(TrendQuery)


def answer(con: duckdb.DuckDBPyConnection, op: str) -> ProjectorStatus:
    if op == "hash":
        return ProjectorStatus(hash=table_hash(con), last_seq=read_last_seq(con))
    return ProjectorStatus(last_seq=read_last_seq(con), counts=table_counts(con))


def fold_records(writer: TableWriter, records: list[Record]) -> list[tuple[Record, str]]:
    """Fold a batch of records; returns the ones that are not events, with the reason."""
    failures: list[tuple[Record, str]] = []
    for rec in records:
        if rec.seq <= writer.position:
            continue  # delivered again: already folded
        try:
            event = decode(rec.subject, rec.data)
        except UndecodableEvent as exc:
            failures.append((rec, str(exc)))
            writer.skip(rec.seq)
            continue
        why = fold_event(writer, rec.seq, event)
        if why:
            failures.append((rec, why))
    return failures


def fold_event(writer: TableWriter, seq: int, event: Event) -> str | None:
    """Fold one event; why not, when it failed (one bad event must not stop the
    projection: its position is passed all the same)."""
    try:
        writer.fold(seq, event)
    except Exception as exc:
        log.exception("cannot fold seq %d", seq)
        writer.skip(seq)
        return f"fold failed: {exc!r}"
    return None


class ProjectorAgent:
    def __init__(self, nc: Client, eventlog: EventLog, db_path: str | Path,
                 tail_nc: Client | None = None) -> None:
        """``tail_nc``: a connection of its own for the log's tail, left unread between
        paced writes (the process is not woken for every event); None: ``eventlog``'s."""
        self.nc = nc
        self.log = eventlog
        self.tail_nc = tail_nc
        self.db = DuckDBThread(Path(db_path))
        self.dead_letter = jetstream_dead_letter(nc, AGENT)
        self.writer = TableWriter()
        self.ready = asyncio.Event()
        self.pacer = Pacer(lambda: self.writer.stored_seq, WRITE_EVERY_S)
        self._subs: list[Any] = []

    async def run(self) -> None:
        sub = None
        try:
            await self.db.open()
            stored = await self.db.call(read_last_seq)
            if stored > await self.log.last_seq():
                raise InvalidInput(
                    f"{self.db.path} is at seq {stored}, past the end of the log: rebuild it"
                )
            self.writer = TableWriter(stored_seq=stored)
            sub = await self.nc.subscribe(subjects.Q_PROJECTOR, queue=QUEUE_GROUP,
                                          cb=self._on_query)
            self._subs.append(await self.nc.subscribe(
                subjects.Q_TEST_DURATIONS, queue=QUEUE_GROUP, cb=self._on_durations))
            self._subs.append(await self.nc.subscribe(
                subjects.Q_FLAKY_TESTS, queue=QUEUE_GROUP, cb=self._on_flaky))
            self._subs.append(await self.nc.subscribe(
                subjects.Q_RESULTS, queue=QUEUE_GROUP, cb=self._on_results))
            self._subs.append(await self.nc.subscribe(
                subjects.Q_TRENDS, queue=QUEUE_GROUP, cb=self._on_trends))
            await self._project()
        finally:
            await to_the_end(self._stop(sub))

    async def _on_durations(self, msg: Msg) -> None:
        """Median passing duration per test node id (``dtf run pytest`` splits by them)."""
        async def durations() -> Durations:
            query = _durations_decoder.decode(msg.data)
            return Durations(ok=True,
                             result=await self.db.call(median_durations, query.node_ids))

        await reply(self.nc, msg, "durations", durations,
                    lambda error, retry: Durations(ok=False, error=error, retryable=retry))

    async def _on_flaky(self, msg: Msg) -> None:
        """Tests that both passed and failed since a time, with the workers they failed on."""
        async def flaky() -> FlakyTests:
            query = _flaky_decoder.decode(msg.data)
            await self._fresh()
            rows = await self.db.call(flaky_tests, query.since, query.limit)
            return FlakyTests(ok=True, result=[
                FlakyTest(test_id=t, passed=p, failed=f, failed_on=on, last_seen=last)
                for t, p, f, on, last in rows])

        await reply(self.nc, msg, "flaky tests", flaky,
                    lambda error, retry: FlakyTests(ok=False, error=error, retryable=retry))

    async def _on_results(self, msg: Msg) -> None:
        """Benchmark results by filters, or a reader's one read-only SELECT."""
        async def results() -> ResultsTable:
            query = _results_decoder.decode(msg.data)
            await self._fresh()
            return await self.db.read(results_answer, query)

        await reply(self.nc, msg, "results", results,
                    lambda error, retry: ResultsTable(ok=False, error=error, retryable=retry))

    async def _on_trends(self, msg: Msg) -> None:
        """Series with change points, anomalies and forecasts; runs compared; flaky tests."""
        async def report() -> TrendReport:
            query = _trends_decoder.decode(msg.data)
            await self._fresh()
            return await self.db.read(trends, query, time.time())

        await reply(self.nc, msg, "trends", report,
                    lambda error, retry: TrendReport(ok=False, error=error, retryable=retry))

    async def _fresh(self) -> None:
        """Read your writes: every event the log held when the query came is in the tables
        first (a user who saw a task end and asks for its results finds them)."""
        end = await self.log.last_seq_on([subjects.ALL_EVENTS])
        await self.pacer.fresh(end, self.ready.is_set())

    async def _stop(self, sub: Any) -> None:
        for extra in [*self._subs, *([sub] if sub is not None else [])]:
            try:
                async with asyncio.timeout(UNSUBSCRIBE_S):  # a stop never waits on NATS
                    await extra.unsubscribe()
            except (nats.errors.Error, TimeoutError) as exc:  # the connection may be gone
                log.debug("unsubscribing: %r", exc)
        await self.db.close()

    async def _project(self) -> None:
        source = self.log if self.tail_nc is None else JetStreamLog(self.tail_nc)
        tail = source.tail([subjects.ALL_EVENTS], 1)
        async with tail:
            if await tail.empty():
                self._caught_up()
            async for batch in tail:
                began = time.monotonic()
                await self._apply(batch)
                if tail.pending == 0:
                    self._caught_up()
                if self.ready.is_set():  # live: let the next transaction carry more
                    with self._held():
                        await self.pacer.pause(time.monotonic() - began, len(batch))

    def _held(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self.tail_nc is None else reads_held(self.tail_nc)

    def _caught_up(self) -> None:
        if not self.ready.is_set():
            log.info("projector caught up at seq %d", self.writer.stored_seq)
            self.ready.set()

    async def _apply(self, batch: list[Record]) -> None:
        stored = self.writer.stored_seq
        for rec, why in fold_records(self.writer, batch):
            if rec.seq > stored:  # dead-lettered once, not again on every restart
                log.warning("dead-lettering seq %d: %s", rec.seq, why)
                await self.dead_letter(rec, why)
        pending = self.writer.take()
        if pending is not None:
            await self.db.call(write_batch, pending)
            faults.point("projector.after_commit")  # committed; the position not yet taken
            self.writer.stored(pending)
            self.pacer.wrote()

    async def _on_query(self, msg: Msg) -> None:
        async def status() -> ProjectorStatus:
            return await self.db.call(answer, _query_decoder.decode(msg.data).op)

        await reply(self.nc, msg, "projector", status,
                    lambda error, _: ProjectorStatus(error=error))
