"""Reading JetStream object-store objects without a consumer.

nats-py reads an object through an ordered push consumer of its own. A client allowed to
create consumers chooses their deliver subject, and the server publishes there for it
(nats-server does not check the creator's rights to that subject), so no client but the
agents may create one (ADR 0008). An object is read here with stream message gets, whose
answers go only to the requester's inbox: the meta message (last on its subject), then
each chunk (the next message on the chunk subject), checked against the meta's digest.
"""

from __future__ import annotations

import base64
import hashlib
import json

from nats.js import JetStreamContext
from nats.js.api import ObjectInfo
from nats.js.errors import NotFoundError

from dtf_core.errors import DTFError

MAX_OBJECT_BYTES = 1 << 30


class ObjectMissing(DTFError):
    """No such object (or it was deleted)."""


def _stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def _info(data: bytes | None, what: str) -> ObjectInfo:
    try:
        info: ObjectInfo = ObjectInfo.from_response(json.loads(data or b""))
        return info
    except (ValueError, TypeError, KeyError):
        raise DTFError(f"the object store's record of {what} is not readable") from None


async def object_info(js: JetStreamContext, bucket: str, name: str) -> ObjectInfo:
    """The object's meta; ObjectMissing if there is none or it was deleted."""
    try:
        msg = await js.get_msg(_stream(bucket), subject=_meta_subject(bucket, name))
    except NotFoundError:
        raise ObjectMissing(f"no object {name!r} in {bucket}") from None
    info = _info(msg.data, name)
    if info.deleted:
        raise ObjectMissing(f"no object {name!r} in {bucket} (deleted)")
    return info


async def get_object(js: JetStreamContext, bucket: str, name: str) -> bytes:
    """The whole object, its digest checked."""
    info = await object_info(js, bucket, name)
    size = int(info.size or 0)
    if size > MAX_OBJECT_BYTES:
        raise DTFError(f"the object {name!r} is {size} bytes; at most {MAX_OBJECT_BYTES}")
    chunk_subject = f"$O.{bucket}.C.{info.nuid}"
    parts: list[bytes] = []
    got = 0
    seq = 1
    for _ in range(int(info.chunks or 0)):
        try:
            msg = await js.get_msg(_stream(bucket), seq=seq, subject=chunk_subject, next=True)
        except NotFoundError:
            break
        parts.append(msg.data or b"")
        got += len(parts[-1])
        seq = int(msg.seq or seq) + 1
    data = b"".join(parts)
    digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    if got != size or (info.digest and info.digest != digest):
        raise DTFError(f"the object {name!r} in {bucket} is incomplete or damaged "
                       f"({got} of {size} bytes read)")
    return data


async def list_objects(js: JetStreamContext, bucket: str) -> list[ObjectInfo]:
    """Every object of ``bucket`` that is not deleted (the last meta of each name)."""
    latest: dict[str, ObjectInfo] = {}
    seq = 1
    while True:
        try:
            msg = await js.get_msg(_stream(bucket), seq=seq, subject=f"$O.{bucket}.M.>",
                                   next=True)
        except NotFoundError:
            break
        info = _info(msg.data, f"an object of {bucket}")
        latest[info.name] = info
        seq = int(msg.seq or seq) + 1
    return [i for i in latest.values() if not i.deleted]
