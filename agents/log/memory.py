"""An in-memory event log with the same semantics as the JetStream adapter."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import anyio

from agents.log.port import (
    MAX_BATCH,
    Append,
    AppendConflict,
    Appended,
    DuplicateBatch,
    Record,
)
from dtf_core.errors import InvalidInput
from dtf_core.subjects import subject_matches


class MemoryLog:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self._msg_ids: dict[str, int] = {}
        self._changed = anyio.Event()

    def _last_on(self, pattern: str) -> int:
        return max((r.seq for r in self.records if subject_matches(pattern, r.subject)), default=0)

    async def append(self, batch: Sequence[Append]) -> Appended:
        if not batch:
            return Appended()
        if len(batch) > MAX_BATCH:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH} messages")
        if len({a.msg_id for a in batch}) != len(batch):
            raise DuplicateBatch("atomic publish batch contains duplicate message id")
        # As JetStream does, message by message: the expected sequence is checked first
        # (against the stream before the batch, not counting the batch's own messages),
        # then the message id.
        for item in batch:
            if item.expect_seq is not None:
                last = self._last_on(item.expect_filter or item.subject)
                if last != item.expect_seq:
                    raise AppendConflict(f"wrong last sequence: {last}")
            if item.msg_id in self._msg_ids:
                if len(batch) == 1:
                    seq = self._msg_ids[item.msg_id]
                    return Appended.of([seq], [seq])
                raise DuplicateBatch("atomic publish batch contains duplicate message id")
        first = len(self.records) + 1
        now = time.time()
        staged = [
            Record(seq=first + i, subject=item.subject, data=item.data, time=now)
            for i, item in enumerate(batch)
        ]
        self.records.extend(staged)
        for item, rec in zip(batch, staged, strict=True):
            self._msg_ids[item.msg_id] = rec.seq
        self._changed.set()
        self._changed = anyio.Event()
        return Appended(r.seq for r in staged)

    async def read(self, filters: Sequence[str], start_seq: int = 1) -> list[Record]:
        return [
            r
            for r in self.records[max(start_seq, 1) - 1 :]
            if any(subject_matches(f, r.subject) for f in filters)
        ]

    def tail(self, filters: Sequence[str], start_seq: int = 1) -> MemoryTail:
        return MemoryTail(self, list(filters), start_seq)

    async def last_seq(self) -> int:
        return len(self.records)

    async def last_seq_on(self, filters: Sequence[str]) -> int:
        return max((self._last_on(f) for f in filters), default=0)


class MemoryTail:
    """The same interface as ``agents.log.tail.Tail``: an async context manager and iterator."""

    def __init__(self, log: MemoryLog, filters: list[str], start_seq: int) -> None:
        self._log = log
        self._filters = filters
        self._next = max(start_seq, 1)
        self.pending = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def empty(self) -> bool:
        """True when nothing matched from the start sequence and nothing has arrived."""
        return not await self._log.read(self._filters, self._next)

    async def __aenter__(self) -> MemoryTail:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def __aiter__(self) -> AsyncIterator[list[Record]]:
        while True:
            changed = self._log._changed
            batch = await self._log.read(self._filters, self._next)
            self._next = len(self._log.records) + 1
            self.pending = 0
            if batch:
                yield batch
            else:
                await changed.wait()
