"""The projector's write pacing, and fresh reads in spite of it.

Once caught up, the projector writes at most one DuckDB transaction every ``every_s``
(a transaction costs 4-30 ms of CPU, machine by machine, whatever it holds). While the
batches are small (a trickle of single tasks: each batch costs about that fixed price),
they go further apart: their work stays under ``share`` of the time, a period of
``most_s`` at most, so a trickle does not spend a tenth of a core on DuckDB next to the
tasks' own hops. Large batches (a busy run) keep ``every_s``: their cost is their rows,
and a longer pause would only leave more to read when the run ends. A reader must not
pay for any of that:
a user who saw a task end and then asks for its results must find them. ``fresh`` waits
until everything the log held when the reader asked is stored, and cuts the pause short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from dtf_core.errors import Unavailable

FRESH_WAIT_S = 10.0
SHARE = 0.05
MOST_S = 1.0
SMALL = 500  # events: a batch smaller costs about a transaction's fixed price


class Pacer:
    """``stored_seq``: the last sequence in the database."""

    def __init__(self, stored_seq: Callable[[], int], every_s: float, *,
                 share: float = SHARE, most_s: float = MOST_S) -> None:
        self.stored_seq = stored_seq
        self.every_s = every_s
        self.share = share
        self.most_s = max(most_s, every_s)
        self._now = asyncio.Event()  # a reader waits: write what there is, do not pause
        self._wrote = asyncio.Event()

    async def pause(self, since_s: float, events: int) -> None:
        """After a batch of ``events`` whose work (its fold and write) began ``since_s``
        ago: wait out the rest of the period, unless a reader is waiting. The period is
        ``every_s``; after a small batch, longer so that its work was ``share`` of it
        (``most_s`` at most)."""
        period = self.every_s
        if events < SMALL:
            period = min(self.most_s, max(period, since_s / self.share))
        left = period - since_s
        if left > 0 and not self._now.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._now.wait()
        self._now.clear()

    def wrote(self) -> None:
        """A batch is committed (``stored_seq`` moved)."""
        self._wrote.set()
        self._wrote = asyncio.Event()

    async def fresh(self, end: int, caught_up: bool, timeout: float = FRESH_WAIT_S) -> None:
        """Return once ``end`` (the log's last event when the reader asked) is stored.
        Raises Unavailable at once while the projector is still catching up with the log,
        and after ``timeout`` if the log does not bring ``end`` (a stalled connection)."""
        if self.stored_seq() >= end:
            return
        if not caught_up:
            raise Unavailable(f"the projection is catching up with the log (at seq "
                              f"{self.stored_seq()} of {end}): ask again in a moment")
        try:
            async with asyncio.timeout(timeout):
                while self.stored_seq() < end:
                    wrote = self._wrote
                    self._now.set()
                    await wrote.wait()
        except TimeoutError:
            raise Unavailable(f"the projection is at seq {self.stored_seq()}, behind the "
                              f"log's {end}, after {timeout:g} s: ask again") from None
