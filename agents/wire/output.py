"""A task's output as clients read it (`dtf logs`, the REST API): the log stream through
consumers the api opens, keeping only what the worker that held each attempt wrote (any
worker may write output under its own id, for any task id)."""

from __future__ import annotations

import contextlib

import msgspec

from agents.log.jetstream import JetStreamLog
from agents.wire.client import ApiClient
from dtf_core import subjects
from dtf_core.events.codec import UndecodableEvent, decode
from dtf_core.events.task import TaskLeased
from dtf_core.events.tests import TestsReported
from dtf_core.ids import validate_id


def served_log(api: ApiClient, stream: str = subjects.EVENTS_STREAM) -> JetStreamLog:
    """A stream as a client reads it: through consumers the api opens for it."""
    return JetStreamLog(api.nc, stream=stream, opener=api.open_tail)


class Leases:
    """Which worker held each attempt of a task."""

    def __init__(self, api: ApiClient, task_id: str) -> None:
        self.api, self.task_id = api, task_id
        self.holders: dict[int, str] = {}

    async def wrote(self, log_subject: str) -> bool:
        parts = log_subject.split(".")
        if len(parts) != 5 or not parts[3].isdigit():
            return False
        attempt, worker = int(parts[3]), parts[4]
        if attempt not in self.holders:
            await self._refresh()
        return self.holders.get(attempt) == worker

    async def _refresh(self) -> None:
        for rec in await served_log(self.api).read(
                [f"dtf.evt.task.{self.task_id}.leased.*"]):
            with contextlib.suppress(UndecodableEvent):
                event = decode(rec.subject, rec.data)
                if isinstance(event, TaskLeased):
                    self.holders[event.attempt] = event.worker_id


class OutputChunk(msgspec.Struct, kw_only=True):
    attempt: int
    stream: str  # stdout or stderr
    text: str


class TaskOutput(msgspec.Struct, kw_only=True):
    task_id: str
    chunks: list[OutputChunk]
    truncated: bool  # only the first ``limit`` bytes


async def task_output(api: ApiClient, task_id: str, limit: int = 2 * 1024 * 1024
                      ) -> TaskOutput:
    """The output written so far, in order, up to ``limit`` bytes."""
    validate_id(task_id, "task id")
    await api.tasks(ids=[task_id], limit=1)  # a clear error for an unknown id
    leases = Leases(api, task_id)
    chunks: list[OutputChunk] = []
    size = 0
    for rec in await served_log(api, subjects.LOGS_STREAM).read([subjects.log_filter(task_id)]):
        if not rec.data or not await leases.wrote(rec.subject):
            continue
        if size + len(rec.data) > limit:
            return TaskOutput(task_id=task_id, chunks=chunks, truncated=True)
        size += len(rec.data)
        chunks.append(OutputChunk(attempt=int(rec.subject.split(".")[3]),
                                  stream=(rec.headers or {}).get("Dtf-Stream", "stdout"),
                                  text=rec.data.decode("utf-8", "replace")))
    return TaskOutput(task_id=task_id, chunks=chunks, truncated=False)


class TestRow(msgspec.Struct, kw_only=True):
    """One result of one test in a run (a rerun adds a row)."""

    __test__ = False  # not a pytest test class
    nodeid: str
    outcome: str
    duration_s: float
    worker_id: str
    task_id: str
    attempt: int
    at: float


Position = tuple[int, int]  # an event's sequence, a case's index in it


async def run_tests(api: ApiClient, run_id: str, *, limit: int, outcome: str | None = None,
                    after: Position = (0, 0)) -> tuple[list[TestRow], Position | None]:
    """A page of a run's test results in log order, after ``after``; and the position
    to read the next page after (None: the log holds no more). It reads from ``after``
    on and stops once the page is full: a page of a 64k-test run does not read it all."""
    validate_id(run_id, "run id")
    rows: list[TestRow] = []
    tail = served_log(api).tail([subjects.tests_filter(run_id)], max(after[0], 1))
    async with tail:
        if await tail.empty():
            return rows, None
        async for batch in tail:
            for rec in batch:
                try:
                    event = decode(rec.subject, rec.data)
                except UndecodableEvent:
                    continue
                if not isinstance(event, TestsReported):
                    continue
                for i, c in enumerate(event.cases):
                    if (rec.seq, i) <= after or outcome not in (None, c.outcome):
                        continue
                    rows.append(TestRow(nodeid=c.nodeid, outcome=c.outcome,
                                        duration_s=c.duration_s, worker_id=event.worker_id,
                                        task_id=event.task_id, attempt=event.attempt,
                                        at=event.at))
                    if len(rows) == limit:
                        return rows, (rec.seq, i)
            if tail.pending == 0:
                return rows, None
    return rows, None
