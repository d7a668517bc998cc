"""Run artifacts (JUnit, JSON, HTML, logs) in the JetStream object store, as
``<run id>/<name>``. Names are plain file names: no directories, no traversal."""

from __future__ import annotations

import re

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from agents.nats.objects import ObjectMissing, get_object, list_objects
from dtf_core.errors import InvalidInput
from dtf_core.errors import NotFound as DTFNotFound
from dtf_core.ids import validate_id
from dtf_core.subjects import ARTIFACTS_BUCKET

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def artifact_name(name: str) -> str:
    if not NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(f"invalid artifact name {name!r}: a plain file name of letters, "
                           "digits, '.', '_' and '-' (no directories)")
    return name


def object_key(run_id: str, name: str) -> str:
    return f"{validate_id(run_id, 'run id')}/{artifact_name(name)}"


async def put_artifact(js: JetStreamContext, run_id: str, name: str, data: bytes) -> str:
    store = await js.object_store(ARTIFACTS_BUCKET)
    key = object_key(run_id, name)
    await store.put(key, data)
    return key


async def get_artifact(js: JetStreamContext, run_id: str, name: str) -> bytes:
    try:
        return await get_object(js, ARTIFACTS_BUCKET, object_key(run_id, name))
    except ObjectMissing:
        raise DTFNotFound(f"no artifact {name} for run {run_id}") from None


async def list_artifacts(js: JetStreamContext, run_id: str) -> list[tuple[str, int]]:
    prefix = f"{validate_id(run_id, 'run id')}/"
    try:
        infos = await list_objects(js, ARTIFACTS_BUCKET)
    except NotFoundError:  # no bucket yet
        return []
    return sorted((i.name[len(prefix):], int(i.size or 0)) for i in infos
                  if i.name.startswith(prefix) and not i.deleted)
