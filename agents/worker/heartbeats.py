"""A worker's heartbeats: its session, its load, and the leases it holds, every interval.
Recovery declares a silent worker lost, and requeues a lease its worker does not list."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import nats.errors
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.wire.messages import HEARTBEAT_LOST, Heartbeat, encode_heartbeat
from dtf_core import subjects

log = logging.getLogger(__name__)


async def beat_forever(nc: Client, worker_id: str, session: str, interval: float, *,
                       running: Callable[[], int],
                       leases: Callable[[], Iterable[int]],
                       resends: Callable[[], int] = lambda: 0,
                       rejoin: Callable[[], Awaitable[object]] | None = None) -> None:
    """``leases``: the fencing tokens held (running, or finished and not reported yet);
    ``resends``: report batches this session sent again; ``rejoin``: what to do when
    recovery answers that it declared this session lost (register again)."""
    subject = subjects.heartbeat_subject(worker_id)
    proc = psutil.Process()
    lost = asyncio.Event()
    reply = ""
    if rejoin is not None:  # into its own inbox: the only subjects a worker may read
        reply = f"{subjects.worker_inbox(worker_id)}.hb.{session}"

        async def answered(msg: Msg) -> None:
            if msg.data == HEARTBEAT_LOST:
                lost.set()

        await nc.subscribe(reply, cb=answered)
    while True:
        beat = Heartbeat(
            session=session, at=time.time(), running=running(), leases=sorted(leases()),
            cpu_percent=psutil.cpu_percent(), memory_percent=psutil.virtual_memory().percent,
            rss_mb=proc.memory_info().rss / 1024**2, report_resends=resends())
        try:
            await nc.publish(subject, encode_heartbeat(beat), reply=reply)
        except nats.errors.Error as exc:  # reconnecting: the next one may pass
            log.info("heartbeat not sent: %r", exc)
        if lost.is_set() and rejoin is not None:
            log.warning("recovery declared worker %s lost (its heartbeats went unheard): "
                        "registering again", worker_id)
            await rejoin()
            lost.clear()  # answers to the beats before the new registration
        await asyncio.sleep(interval)
