"""The durable push consumer that delivers one worker session's leases and cancel requests.

The api creates it when the worker registers; the worker only binds to it. Workers have no
right to create consumers, so a worker credential cannot open a consumer with a wider filter
and read the whole event log (ADR 0004).
"""

from __future__ import annotations

import contextlib

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from dtf_core import subjects

ACK_WAIT_S = 60.0
IDLE_HEARTBEAT_S = 5.0
INACTIVE_S = 24 * 3600.0


def lease_consumer_config(worker_id: str, session: str, after_seq: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=subjects.lease_consumer(worker_id),
        deliver_subject=subjects.lease_delivery(worker_id, session),
        filter_subjects=subjects.lease_filters(worker_id),
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after_seq + 1,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=100_000,
        idle_heartbeat=IDLE_HEARTBEAT_S,
        flow_control=True,
        inactive_threshold=INACTIVE_S,
    )


async def open_lease_consumer(js: JetStreamContext, worker_id: str, session: str,
                              after_seq: int) -> None:
    """Replace the worker's consumer with one for this session, starting after ``after_seq``
    (the worker's ``registered`` event): every lease of the new session is after it."""
    name = subjects.lease_consumer(worker_id)
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(subjects.EVENTS_STREAM, name)
    await js.add_consumer(subjects.EVENTS_STREAM,
                          lease_consumer_config(worker_id, session, after_seq))
