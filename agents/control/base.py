"""What the control plane's deciding agents share: a board folded from the log (their own
tail, or one fold shared by a control plane), dead letters, an optional leadership claim
that lets only one replica act, and committing what they decide."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from nats.aio.client import Client

from agents.control.leadership import TTL_S, Leadership, holder_id
from agents.log.commit import Change, commit
from agents.log.fold import DeadLetter, Folder, jetstream_dead_letter
from agents.log.port import Appended, EventLog, Record
from dtf_core import subjects
from projections.board import Board

log = logging.getLogger(__name__)


async def log_only(rec: Record, why: str) -> None:
    """The dead letter of an agent without NATS (tests on the in-memory log)."""
    log.warning("undecodable event at seq %d: %s", rec.seq, why)


class FoldingAgent:
    """An agent deciding from its board. ``lead`` makes it act only while it holds its
    role's leadership claim (standbys fold and wait); ``on_gain`` runs when it gains it."""

    role = "agent"

    def __init__(self, nc: Client | None, eventlog: EventLog, *, name: str,
                 clock: Callable[[], float] = time.time, folder: Folder | None = None,
                 board: Board | None = None, filters: Sequence[str] = subjects.STATE_EVENTS,
                 lead: bool = False, lead_ttl: float = TTL_S,
                 on_gain: Callable[[], None] | None = None) -> None:
        self.nc = nc
        self.log = eventlog
        self.name = name
        self.clock = clock
        dead_letter: DeadLetter = jetstream_dead_letter(nc, name) if nc is not None else log_only
        self.owns_folder = folder is None
        self.folder = folder or Folder(eventlog, board or Board(), dead_letter=dead_letter,
                                       filters=filters)
        self.board = self.folder.board
        self.leadership = Leadership(self.role, holder_id(name), eventlog, self.board,
                                     ttl=lead_ttl, clock=clock,
                                     on_gain=on_gain) if lead else None

    def leads(self) -> bool:
        """Whether this agent may act now: it holds the claim, or runs without claims."""
        return self.leadership is None or self.leadership.is_leader()

    async def start(self, tg: asyncio.TaskGroup) -> None:
        """Fold (unless a control plane folds for us) until caught up, then claim."""
        if self.owns_folder:
            tg.create_task(self.folder.run())
        await self.folder.caught_up.wait()
        if self.leadership is not None:
            tg.create_task(self.leadership.run())

    async def commit(self, changes: Sequence[Change]) -> list[Appended | None]:
        """Append ``changes`` and fold the acknowledged ones into the board at once."""
        return (await commit(self.log, self.board, changes, self.folder.own)
                if changes else [])
