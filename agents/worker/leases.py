"""A worker's lease intake: the durable consumer the api opened for this session, checked
delivery by delivery. A lease runs once, only when this session's own consumer delivered
it, and only when the worker has room for its reservations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from agents.log.jetstream import ack_source, parse_ack_reply
from agents.nats.fast_client import inline
from dtf_core import subjects
from dtf_core.errors import Unavailable
from dtf_core.events.codec import UndecodableEvent, decode
from dtf_core.events.task import TaskCancelRequested, TaskLeased

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One lease this session runs: the lease, its fencing token, and its cancel signal."""

    lease: TaskLeased
    fencing: int
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class LeaseIntake:
    """``on_lease``: a new lease of this session, to run; ``on_cancel``: a cancel request
    for a task (which may or may not run here)."""

    def __init__(self, js: JetStreamContext, worker_id: str, session: str, *,
                 on_lease: Callable[[Attempt], None],
                 on_cancel: Callable[[str], None]) -> None:
        self.js = js
        self.worker_id = worker_id
        self.session = session
        self.on_lease = on_lease
        self.on_cancel = on_cancel
        self.consumer = subjects.lease_consumer(worker_id)
        self.fencing_seen: set[int] = set()  # every lease this session took: each runs once
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Bind to the lease consumer the api opened for this session at registration."""
        info = await self.js.consumer_info(subjects.EVENTS_STREAM, self.consumer)
        if info.config.deliver_subject != subjects.lease_delivery(self.worker_id, self.session):
            raise Unavailable(f"consumer {self.consumer} belongs to another session of this "
                              "worker")
        self._sub = await self.js.subscribe_bind(
            subjects.EVENTS_STREAM, info.config, self.consumer, cb=self._on_message,
            manual_ack=True, pending_msgs_limit=10_000_000, pending_bytes_limit=1024**3,
        )
        inline(self.js._nc, self._sub._sub)  # taken as read: _on_message never waits

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("unsubscribing from leases: %r", exc)

    async def _on_message(self, msg: Msg) -> None:
        # Only what this worker's own consumer (the one the api opened) delivers is a
        # lease: anyone able to aim a delivery or a reply at this inbox could otherwise
        # make it run a task again.
        if ack_source(msg.reply) != (subjects.EVENTS_STREAM, self.consumer):
            log.warning("ignoring a message on the lease inbox that this worker's consumer "
                        "did not deliver (subject %s)", msg.subject[:200])
            return
        try:
            self._take(msg)
        finally:
            # Acked once taken: a lease that reports at once (a noop, a decline) then
            # leaves in the same write as its report.
            await msg.ack()

    def _take(self, msg: Msg) -> None:
        try:
            seq = parse_ack_reply(msg.reply)[0]
            event = decode(msg.subject, msg.data)
        except (UndecodableEvent, ValueError, IndexError) as exc:
            log.warning("ignoring undecodable lease message on %s: %s", msg.subject, exc)
            return
        if isinstance(event, TaskLeased):
            if event.session != self.session or event.worker_id != self.worker_id:
                return  # a lease for an earlier incarnation: recovery requeues it
            if seq in self.fencing_seen:
                log.warning("lease %d of %s delivered again; it runs once", seq, event.task_id)
                return
            self.fencing_seen.add(seq)
            self.on_lease(Attempt(event, seq))
        elif isinstance(event, TaskCancelRequested):
            self.on_cancel(event.task_id)
