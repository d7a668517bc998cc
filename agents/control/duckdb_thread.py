"""The projector's DuckDB connection: opened hardened, used by one thread at a time in
call order, and closed only after the calls already queued, whatever is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import duckdb

from agents.proc.cores import half_the_cores
from dtf_core.errors import Unavailable
from projections.tables import create_tables

T = TypeVar("T")
IN_MEMORY = Path(":memory:")  # DuckDB's name for a database that is never a file
# DuckDB runs a thread per core by default; the projector shares its host with nats-server
# and the control plane, and its batches are small: half the cores is plenty, and on a
# 2-core host one thread lifted end-to-end throughput by about a tenth (docs/performance.md).
THREADS = half_the_cores()
# DuckDB plans an upsert as a join of the batch against a scan of the table. Up to this
# many keys the join hands the scan the keys themselves, found through the primary key's
# index; above it (DuckDB's default: 50) the scan reads the whole table, so a live batch's
# cost grew with every task ever projected (bench/upserts.py, ADR 0024: a 100-row batch
# 4-5x as costly at a million tasks). Past a few hundred keys, finding them one by one
# costs more than the scan in a young table.
OR_FILTER_KEYS = 256
Config = dict[str, str | bool | int | float | list[str]]
# What the projector's queries run with (the benches use the same).
TUNING: Config = {"threads": THREADS, "dynamic_or_filter_threshold": OR_FILTER_KEYS}
HARDENED: Config = {"enable_external_access": False, "lock_configuration": True, **TUNING}


def open_db(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        # Defence in depth: the projector's connection can reach no file or URL but its own
        # database, and nothing can switch that back on.
        con = duckdb.connect(str(path), config=HARDENED)
    except duckdb.IOException as exc:  # most often: another process holds the file
        raise Unavailable(f"cannot open {path}: {exc}") from None
    create_tables(con)
    return con


async def to_the_end(aw: Awaitable[T]) -> T:
    """Await ``aw`` in its own task so that cancelling the caller (even twice) cannot cut it
    short; the caller's cancellation is delivered once it is done."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = cancelled or not task.done()
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


class DuckDBThread:
    """One DuckDB connection, used by one worker thread at a time in call order.

    Each call lives in its own task that holds the limiter until the thread returns, so a
    cancelled caller never leaves a DuckDB call running while the next one (or the close)
    starts on the same connection.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._limiter = anyio.CapacityLimiter(1)
        self._con: duckdb.DuckDBPyConnection | None = None
        # Users' queries run on a cursor of their own, in a thread of their own: a long
        # read never holds up the projection's writes (DuckDB reads a snapshot).
        self._read_limiter = anyio.CapacityLimiter(1)
        self._reader: duckdb.DuckDBPyConnection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        con = await self._in_thread(open_db, self.path)
        self._con = con
        self._reader = await self._in_thread(con.cursor)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(reader cursor, *args)`` in the readers' thread, beside the writes."""

        def call() -> T:
            if self._reader is None:
                raise Unavailable("the projector's database is closed")
            return fn(self._reader, *args)

        return await self._in_thread(call, limiter=self._read_limiter)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in the DuckDB thread."""

        def call() -> T:
            if self._con is None:
                raise Unavailable("the projector's database is closed")
            return fn(self._con, *args)

        return await self._in_thread(call)

    async def close(self) -> None:
        """Close after the calls already queued; finishes even if the caller is cancelled."""

        def close_reader() -> None:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.interrupt()
                reader.close()

        def close() -> None:
            con, self._con = self._con, None
            if con is not None:
                con.close()

        await to_the_end(self._in_thread(close_reader, limiter=self._read_limiter))
        await to_the_end(self._in_thread(close))

    async def _in_thread(self, fn: Callable[..., T], *args: Any,
                         limiter: anyio.CapacityLimiter | None = None) -> T:
        coro: Coroutine[Any, Any, T] = anyio.to_thread.run_sync(
            fn, *args, limiter=limiter or self._limiter)
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here too, for a caller that was cancelled meanwhile
