"""Messages between processes outside the event log, typed and decoded once at the edge."""

from __future__ import annotations

import msgspec


class Heartbeat(msgspec.Struct, kw_only=True):
    """A worker's sign of life on ``dtf.hb.<worker id>`` (msgpack), every heartbeat
    interval. ``leases`` are the fencing tokens the session holds (running, or finished
    and not reported yet): recovery requeues a lease its worker does not list."""

    session: str
    at: float
    running: int = 0
    leases: list[int] | None = None
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    rss_mb: float = 0.0
    report_resends: int = 0  # report batches this session sent again


# Recovery's answer to a heartbeat of a session it has declared lost (a pause, a network
# partition, its NATS server restarting): its leases went back to the queue, and the
# worker registers again to get work again.
HEARTBEAT_LOST = b"lost"

_hb_encoder = msgspec.msgpack.Encoder()
_hb_decoder = msgspec.msgpack.Decoder(Heartbeat)


def encode_heartbeat(beat: Heartbeat) -> bytes:
    return _hb_encoder.encode(beat)


def decode_heartbeat(data: bytes) -> Heartbeat:
    """Raises msgspec.DecodeError (a ValidationError too) for a malformed heartbeat."""
    return _hb_decoder.decode(data)
