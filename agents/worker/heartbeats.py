"""A worker's heartbeats: its session, its load, and the leases it holds, every interval.
Recovery declares a silent worker lost, and requeues a lease its worker does not list."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import nats.errors
import psutil
from nats.aio.client import Client

from agents.wire.messages import Heartbeat, encode_heartbeat
from dtf_core import subjects

log = logging.getLogger(__name__)


async def beat_forever(nc: Client, worker_id: str, session: str, interval: float, *,
                       running: Callable[[], int],
                       leases: Callable[[], Iterable[int]],
                       resends: Callable[[], int] = lambda: 0) -> None:
    """``leases``: the fencing tokens held (running, or finished and not reported yet);
    ``resends``: report batches this session sent again."""
    subject = subjects.heartbeat_subject(worker_id)
    proc = psutil.Process()
    while True:
        beat = Heartbeat(
            session=session, at=time.time(), running=running(), leases=sorted(leases()),
            cpu_percent=psutil.cpu_percent(), memory_percent=psutil.virtual_memory().percent,
            rss_mb=proc.memory_info().rss / 1024**2, report_resends=resends())
        try:
            await nc.publish(subject, encode_heartbeat(beat))
        except nats.errors.Error as exc:  # reconnecting: the next one may pass
            log.info("heartbeat not sent: %r", exc)
        await asyncio.sleep(interval)
