"""An ordered push consumer of a JetStream stream, read through raw deliveries.

The consumer is ephemeral (no acks, one delivery, flow control, idle heartbeats). An agent
creates its own (``open_consumer``); a client may not create consumers (it would choose the
deliver subject, and the server would publish stream messages there on its behalf: ADR
0008), so it subscribes to a fresh subject in its own inbox and asks the api
(``dtf.q.tail``) to open one delivering there. Either way the reader keeps the guarantees of
an ordered consumer itself: it answers flow control, and when a delivery is missed (a gap
in the consumer sequence, a heartbeat naming another last delivery, or no heartbeat for a
while) it opens a new consumer from the next stream sequence.

Deliveries bypass nats-py's per-message path (agents/nats/parser.py): the parser hands the
reader each socket read's messages as raw tuples, turned into records here in the reader's
task, in bulk (ADR 0012).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from agents.log.port import Record, parse_headers
from agents.nats.parser import RawSink
from agents.nats.raw_subs import raw_subscribe, unsubscribe
from dtf_core import commands as cmds
from dtf_core.replies import TailOpened
from dtf_core.subjects import subject_matches

if TYPE_CHECKING:
    from agents.log.jetstream import JetStreamLog

log = logging.getLogger(__name__)
Opener = Callable[[cmds.OpenTail], Awaitable[TailOpened]]
HEARTBEAT_S = 2.0  # consumers are opened with this idle heartbeat
MISSED_HEARTBEATS = 3  # silent this long: the consumer is gone, open another
INACTIVE_S = 5.0  # the server deletes a consumer this long after its reader went away
REOPEN_PAUSE_S = 0.5
RELEASE_WAIT_S = 1.0  # deleting a finished reader's consumer: best effort
_STATUS = b"NATS/1.0 100"
_ACK = b"$JS.ACK."

async def open_consumer(nc: Client, cmd: cmds.OpenTail) -> TailOpened:
    """An ephemeral ordered push consumer delivering into ``cmd.deliver`` (checked by the
    caller: the api checks that a client's subject is its own inbox)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    filters = list(cmd.filters)
    cfg = ConsumerConfig(
        deliver_subject=cmd.deliver, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=cmd.start_seq, ack_policy=AckPolicy.NONE, max_deliver=1,
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=filters if len(filters) > 1 else None,
        flow_control=True, idle_heartbeat=HEARTBEAT_S,
        inactive_threshold=INACTIVE_S, mem_storage=True, num_replicas=1)
    info = await nc.jetstream().add_consumer(cmd.stream, cfg)
    return TailOpened(consumer=info.name, pending=info.num_pending or 0)


async def answer_status(nc: Client, reply: bytes, raw: bytes) -> int | None:
    """Answer flow control (what came before it is delivered: ask for more) or a stalled
    consumer's heartbeat; the last consumer sequence a heartbeat says it delivered."""
    if reply:
        await nc.publish(reply.decode(), b"")
    headers = parse_headers(raw)
    stalled = headers.get("Nats-Consumer-Stalled")
    if stalled:
        await nc.publish(stalled, b"")
    last = headers.get("Nats-Last-Consumer")
    return None if last is None else int(last)


class OrderedConsumer:
    """Records from ``start_seq`` on, into ``_buf``; ``_ready`` is set when some came."""

    def __init__(self, log: JetStreamLog, start_seq: int, opener: Opener | None) -> None:
        """``opener``: the api's ``open_tail`` for a client; None for an agent, which opens
        (and deletes) its consumers itself."""
        self._log = log
        self._start = max(start_seq, 1)
        self._opener: Opener = opener or (lambda cmd: open_consumer(log.nc, cmd))
        self._owns = opener is None
        self._buf: list[Record] = []
        self._ready = asyncio.Event()
        self._sub: Subscription | None = None
        self._sink: RawSink | None = None  # the current consumer's deliveries
        self._consumer: str | None = None
        self._wanted: list[str] | None = None  # records to keep (a covering filter was sent)
        self._filters_sent: list[str] = []
        self._next_cseq = 1
        self._last_sseq = self._start - 1
        self._opened_pending = -1
        self._heard = 0.0
        self._watch: asyncio.Task[None] | None = None
        self._reopening = False
        self._closed = False
        self.pending = -1

    async def _open(self, filters: list[str], start: int) -> None:
        """Subscribe to a fresh inbox subject, then open a consumer delivering there
        (deliveries may come before the consumer's creation is answered)."""
        nc = self._log.nc
        deliver = nc.new_inbox()
        sink = RawSink(lambda: self._woken(sink))
        sub = await raw_subscribe(nc, deliver, sink)
        self._next_cseq = 1
        old_sink, self._sink = self._sink, sink
        try:
            res = await self._opener(cmds.OpenTail(stream=self._log.stream, filters=filters,
                                                   start_seq=start, deliver=deliver))
        except BaseException:
            self._sink = old_sink
            await unsubscribe(nc, sub)
            raise
        old, self._sub = self._sub, sub
        old_consumer, self._consumer = self._consumer, res.consumer
        if self._closed:
            old, old_consumer = sub, res.consumer
        self._opened_pending = res.pending
        self._heard = asyncio.get_running_loop().time()
        if old is not None:
            await unsubscribe(nc, old)
            await self._release(old_consumer)

    def _woken(self, sink: RawSink) -> None:
        if sink is self._sink:
            self._heard = asyncio.get_running_loop().time()
            self._ready.set()

    async def _drain(self) -> None:
        """Turn what the current consumer delivered into records, in order; a gap opens a
        new consumer and drops the rest."""
        sink = self._sink
        if sink is None or not sink.items:
            return
        items, sink.items = sink.items, []
        wanted = self._wanted
        out = self._buf
        nxt = self._next_cseq
        for subject, reply, headers, payload in items:
            if not reply.startswith(_ACK):
                if headers is not None and headers.startswith(_STATUS) and not payload:
                    last = await answer_status(self._log.nc, reply, headers)
                    if self._sink is not sink:  # replaced meanwhile: the rest is stale
                        return
                    if last is not None and last != nxt - 1:  # it saw a delivery we missed
                        self._next_cseq = nxt
                        self._reopen()
                        return
                continue
            if reply.count(b".") == 8:  # $JS.ACK.<stream>.<consumer>.<n>.<seq>.<cseq>.<ns>.<left>
                _, s_seq, c_seq, stamp, left = reply.rsplit(b".", 4)
            else:  # the v2 form: $JS.ACK.<domain>.<account>.<stream>...<left>.<token>
                s_seq, c_seq, stamp, left = reply.split(b".")[7:11]
            sseq, cseq, ts, pending = int(s_seq), int(c_seq), int(stamp), int(left)
            if cseq != nxt:  # a delivery was missed: start again after the last one
                self._next_cseq = nxt
                self._reopen()
                return
            nxt = cseq + 1
            self._last_sseq = sseq
            self.pending = pending
            subj = subject.decode()
            if wanted is not None and not any(subject_matches(f, subj) for f in wanted):
                continue
            out.append(Record(seq=sseq, subject=subj, data=payload, time=ts / 1e9,
                              raw_headers=headers))
        self._next_cseq = nxt

    def _reopen(self) -> None:
        self._sink = None  # drop what the abandoned consumer still delivers
        if self._reopening:
            return
        self._reopening = True
        asyncio.get_running_loop().create_task(self._reopen_now())

    async def _reopen_now(self) -> None:
        try:
            while self._sub is not None:
                try:
                    log.info("reopening a tail of %s at seq %d", self._log.stream,
                             self._last_sseq + 1)
                    await self._open(self._filters_sent, self._last_sseq + 1)
                    return
                except Exception as exc:
                    log.warning("could not reopen a tail of %s (%s); trying again",
                                self._log.stream, exc)
                    await asyncio.sleep(REOPEN_PAUSE_S)
        finally:
            self._reopening = False

    async def _watchdog(self) -> None:
        clock = asyncio.get_running_loop().time
        while self._sub is not None:
            await asyncio.sleep(HEARTBEAT_S)
            if not self._reopening and clock() - self._heard > HEARTBEAT_S * MISSED_HEARTBEATS:
                self._reopen()

    async def _release(self, consumer: str | None) -> None:
        """Delete an agent's consumer now rather than when the server notices nobody
        listens (streams hold a bounded number of consumers). A client may not: the api's
        consumer goes soon after the client stops listening."""
        if not self._owns or not consumer or self._log.nc.is_closed:
            return
        try:
            async with asyncio.timeout(RELEASE_WAIT_S):
                await self._log.js.delete_consumer(self._log.stream, consumer)
        except (nats.errors.Error, TimeoutError) as exc:  # it expires on its own
            log.debug("could not delete consumer %s now: %r", consumer, exc)

    async def close(self) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._sub is not None:
            sub, self._sub, self._sink = self._sub, None, None
            await unsubscribe(self._log.nc, sub)
            await self._release(self._consumer)
