"""Holding a leadership claim for a singleton role (scheduler, recovery).

The claim is appended with optimistic concurrency on ``dtf.evt.lead.<role>.>`` and renewed
every third of its time to live; a standby takes over once it expires, with a higher term.
An old leader that comes back sees the newer term in its fold and stands down. Safety never
rests on this: two agents that both believe they lead still cannot write two live leases
(every lease is checked against the task's last sequence); leadership only keeps standbys
from doing the same work twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from agents.log.appender import append_groups
from agents.log.port import Append, EventLog
from dtf_core import subjects
from dtf_core.events.codec import encode, msg_id_of, subject_of
from dtf_core.lead import decide_claim, leads
from projections.board import Board

log = logging.getLogger(__name__)
TTL_S = 1.0  # a standby takes over within this of the last renewal (renewals every third)


def holder_id(name: str) -> str:
    """Who holds a claim: the agent, its host and pid (for audits and for operators who
    must find the process), and a random part that keeps a restarted pid distinct."""
    return f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leadership:
    def __init__(self, role: str, holder: str, eventlog: EventLog, board: Board, *,
                 ttl: float = TTL_S, clock: Callable[[], float] = time.time,
                 on_gain: Callable[[], None] | None = None) -> None:
        self.role = role
        self.holder = holder
        self.log = eventlog
        self.board = board
        self.ttl = ttl
        self.margin = ttl / 6
        self.clock = clock
        self.on_gain = on_gain
        self.was_leader = False

    def is_leader(self) -> bool:
        return leads(self.board.leaders.get(self.role), self.holder, self.clock(), self.margin)

    async def claim_once(self) -> bool:
        """Claim or renew if the role is free or ours; True while we lead."""
        claim = decide_claim(self.board.leaders.get(self.role), role=self.role,
                             holder=self.holder, now=self.clock(), ttl=self.ttl)
        if claim is not None:
            append = Append(subject=subject_of(claim), data=encode(claim),
                            msg_id=msg_id_of(claim),
                            expect_seq=self.board.expect(
                                "lead", self.role, self.board.lead_seq.get(self.role, 0)),
                            expect_filter=subjects.lead_filter(self.role))
            (seqs,) = await append_groups(self.log, [[append]])
            if seqs is not None:
                self.board.apply(seqs[0], claim)
        leading = self.is_leader()
        if leading and not self.was_leader:
            log.info("%s leads %s (term %d)", self.holder, self.role,
                     self.board.leaders[self.role].term)
            if self.on_gain is not None:
                self.on_gain()
        elif self.was_leader and not leading:
            log.warning("%s no longer leads %s", self.holder, self.role)
        self.was_leader = leading
        return leading

    async def run(self) -> None:
        while True:
            try:
                pause = self.pause(await self.claim_once())
            except Exception as exc:  # a failed append: try again a little later
                log.warning("leadership claim for %s failed: %r", self.role, exc)
                pause = self.ttl / 6
            await asyncio.sleep(pause)

    def pause(self, leading: bool) -> float:
        """A leader renews every third of the ttl. A standby wakes just after the current
        claim expires (checking the claim is local, so waking costs nothing), so that it
        takes over within the ttl of the leader's last renewal."""
        period = self.ttl / 3
        current = self.board.leaders.get(self.role)
        if leading or current is None:
            return period
        return min(period, max(0.01, current.expires_at - self.clock() + 0.01))
