"""A model sharded across browser contexts, as one run: N browser tasks, each told its
part (``shard``, ``shards`` in its params), and a merge task that depends on all of them
(hard dependencies: it runs when every shard succeeded, and fails when one failed). The
scheduler places the shards on any browser workers, in parallel, and the merge after."""

from __future__ import annotations

import msgspec

from dtf_core.browser_spec import browser_config
from dtf_core.errors import InvalidInput
from dtf_core.ids import validate_id
from dtf_core.spec import TaskSpec, validate_spec

MAX_SHARDS = 256


def shard_run(shard: TaskSpec, shards: int, prefix: str,
              merge: TaskSpec | None = None) -> list[TaskSpec]:
    """``shards`` copies of the browser task ``shard`` (ids ``PREFIX-0``...), then
    ``merge`` (id ``PREFIX-merge``) depending on them all; a browser merge task is told
    ``shards`` and the shards' ids (``tasks``, comma-separated) in its params."""
    if shard.type != "browser":
        raise InvalidInput("only browser tasks are sharded")
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInput(f"shards must be between 1 and {MAX_SHARDS}, not {shards}")
    validate_id(f"{prefix}-merge", "shard id prefix")
    params = browser_config(shard).params
    if "shard" in params or "shards" in params:
        raise InvalidInput("a sharded task's params may not set `shard` or `shards`")
    ids = [f"{prefix}-{i}" for i in range(shards)]
    out = [_with(shard, task_id, {**params, "shard": str(i), "shards": str(shards)})
           for i, task_id in enumerate(ids)]
    if merge is not None:
        if merge.type == "browser":
            merge = _with(merge, f"{prefix}-merge", {
                **browser_config(merge).params, "shards": str(shards), "tasks": ",".join(ids)})
        else:
            merge = msgspec.structs.replace(merge, id=f"{prefix}-merge")
        out.append(validate_spec(msgspec.structs.replace(
            merge, dependencies=(*merge.dependencies, *ids))))
    return out


def _with(spec: TaskSpec, task_id: str, params: dict[str, str]) -> TaskSpec:
    config = {**spec.config, "params": params}
    return validate_spec(msgspec.structs.replace(spec, id=task_id, config=config))
