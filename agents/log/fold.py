"""What every log-folding agent shares: a board kept current from a tail of the log,
dead letters for undecodable events, and waiting until the board has reached a sequence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from agents.log.own import OwnEvents
from agents.log.port import EventLog, Record
from dtf_core import subjects
from dtf_core.events.codec import Event, UndecodableEvent, decode
from projections.board import Board

log = logging.getLogger(__name__)

DeadLetter = Callable[[Record, str], Awaitable[None]]
OnBatch = Callable[[list[tuple[int, Event]]], Awaitable[None]]


class Folder:
    """Keeps ``board`` folded from the log; calls ``on_batch`` with each batch of new events."""

    def __init__(
        self,
        eventlog: EventLog,
        board: Board,
        *,
        dead_letter: DeadLetter,
        on_batch: OnBatch | None = None,
        filters: Sequence[str] = subjects.STATE_EVENTS,
    ) -> None:
        self.log = eventlog
        self.board = board
        self.dead_letter = dead_letter
        self.listeners: list[OnBatch] = [on_batch] if on_batch is not None else []
        self.filters = list(filters)
        self.caught_up = asyncio.Event()
        self._progress = asyncio.Event()
        self.position = board.last_seq
        self.folded = 0  # records folded by this process (a cold start from a snapshot: few)
        self.own = OwnEvents()  # this process's appends, folded at their PubAck

    async def run(self) -> None:
        tail = self.log.tail(self.filters, self.position + 1)
        async with tail:
            if await tail.empty():
                self.caught_up.set()
            async for batch in tail:
                await self.fold(batch)
                if tail.pending == 0:
                    self.caught_up.set()

    async def fold(self, batch: list[Record]) -> None:
        events: list[tuple[int, Event]] = []
        own = self.own
        for rec in batch:
            if (mine := own.take(rec.seq)) is not None:  # in the board already
                events.append((rec.seq, mine))
                continue
            try:
                event = decode(rec.subject, rec.data)
            except UndecodableEvent as exc:
                log.warning("dead-lettering seq %d: %s", rec.seq, exc)
                self.board.note_stray(rec.seq, rec.subject)
                await self.dead_letter(rec, str(exc))
                continue
            try:
                self.board.apply(rec.seq, event)
            except Exception as exc:  # one bad event must not stop the agent
                log.exception("cannot fold seq %d", rec.seq)
                self.board.note_stray(rec.seq, rec.subject)
                await self.dead_letter(rec, f"fold failed: {exc!r}")
                continue
            events.append((rec.seq, event))
        if batch:
            self.folded += len(batch)
            self.position = max(self.position, batch[-1].seq)
            own.passed(self.position)
        if events:
            for listener in self.listeners:
                await listener(events)
        self._progress.set()
        self._progress = asyncio.Event()

    async def _until(self, reached: Callable[[], bool], timeout: float) -> bool:
        """Wait, fold by fold, until ``reached()``; False on timeout. True returns with no
        await after the check, so the caller sees the board exactly as checked."""
        if reached():  # the common case (a report after its lease was folded): no timer
            return True
        try:
            async with asyncio.timeout(timeout):
                while not reached():
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        """Until the board holds ``seq`` (folded, or applied by this agent itself)."""
        return await self._until(
            lambda: self.position >= seq or self.board.last_seq >= seq, timeout)

    async def settled(self, timeout: float = 5.0) -> bool:
        """Until the fold has reached every event the board holds: an agent applies its own
        appends before the fold delivers them, and may lack others' in between."""
        return await self._until(lambda: self.position >= self.board.last_seq, timeout)

    async def catch_up(self, timeout: float = 5.0) -> bool:
        """Until everything stored now on this fold's filters has been folded (by the fold's
        own position, which the agent's own appends do not move)."""
        end = await self.log.last_seq_on(self.filters)
        return await self._until(lambda: self.position >= end, timeout)


def _header_safe(text: str) -> str:
    return " ".join(text.split())[:1000]


def jetstream_dead_letter(nc: object, agent: str) -> DeadLetter:
    """Dead letters go to ``dtf.dlq.<agent>`` (stream DTF_DLQ) with the original subject,
    sequence and the reason; the message id makes a replayed dead letter harmless."""
    from nats.aio.client import Client

    assert isinstance(nc, Client)
    js = nc.jetstream()

    async def dead_letter(rec: Record, why: str) -> None:
        headers = {
            "Nats-Msg-Id": f"{agent}-{rec.seq}",
            "Dtf-Subject": _header_safe(rec.subject),
            "Dtf-Seq": str(rec.seq),
            "Dtf-Error": _header_safe(why),
        }
        try:
            await js.publish(subjects.dlq_subject(agent), rec.data, headers=headers)
        except Exception:  # the dead letter is best effort; the agent must go on
            log.exception("cannot dead-letter seq %d", rec.seq)

    return dead_letter
