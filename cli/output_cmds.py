"""`dtf logs` (a task's output, followed until it ends) and `dtf artifacts` (a run's
reports in the object store)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from nats.aio.client import Client

from agents.wire.client import ApiClient
from agents.wire.output import Leases, served_log
from cli.client_cmds import Target, connected, wait_terminal
from dtf_core import subjects
from dtf_core.errors import InvalidInput
from dtf_core.ids import validate_id


async def logs(target: Target, task_id: str, follow: bool) -> int:
    """Print a task's output; with ``follow``, until the task ends and its last attempt's
    output has been printed (the worker sends the output before it reports)."""
    validate_id(task_id, "task id")
    async with connected(target) as nc:
        api = ApiClient(nc, credential=target.credential)
        await api.tasks(ids=[task_id], limit=1)  # a clear error for an unknown id
        eventlog = served_log(api, subjects.LOGS_STREAM)
        leases = Leases(api, task_id)
        if not follow:
            for rec in await eventlog.read([subjects.log_filter(task_id)]):
                if await leases.wrote(rec.subject):
                    _write(rec.data, rec.headers)
            return 0
        printed = 0
        progress = asyncio.Event()

        async def printer() -> None:
            nonlocal printed
            async with eventlog.tail([subjects.log_filter(task_id)]) as tail:
                async for batch in tail:
                    for rec in batch:
                        if await leases.wrote(rec.subject):
                            _write(rec.data, rec.headers)
                    if batch:  # (empty: the tail at its end after dropped records)
                        printed = batch[-1].seq
                    progress.set()

        task = asyncio.create_task(printer())
        try:
            final = (await wait_terminal(nc, api, [task_id], None))[task_id]
            last = await _last_log_seq(nc, task_id, final.attempt or 0)
            while printed < last and not task.done():
                progress.clear()
                await progress.wait()
        finally:
            task.cancel()
    return 0


async def _last_log_seq(nc: Client, task_id: str, attempt: int) -> int:
    try:
        msg = await nc.jetstream().get_last_msg(subjects.LOGS_STREAM,
                                                subjects.attempt_log_filter(task_id, attempt))
    except Exception:  # no output at all for that attempt (a noop, or nothing printed)
        return 0
    return int(msg.seq or 0)


def _write(data: bytes, headers: dict[str, str] | None) -> None:
    if not data:
        return
    stream = (headers or {}).get("Dtf-Stream", "stdout")
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.buffer.write(data)
    out.flush()


async def artifacts(target: Target, action: str, run_id: str, name: str | None,
                    output: str | None, *, as_json: bool = False) -> int:

    from agents.nats.artifacts import artifact_name, get_artifact, list_artifacts

    validate_id(run_id, "run id")
    async with connected(target) as nc:
        js = nc.jetstream()
        if action == "list":
            items = await list_artifacts(js, run_id)
            if as_json:
                sys.stdout.write(json.dumps([{"name": n, "size": s} for n, s in items]) + "\n")
            for n, size in [] if as_json else items:
                sys.stdout.write(f"{n}\t{size}\n")
            return 0
        if name is None:
            raise InvalidInput("artifacts get needs the artifact's name")
        data = await get_artifact(js, run_id, artifact_name(name))
    path = Path(output or name)
    path.write_bytes(data)  # noqa: ASYNC240 -- the one write, after the connection closed
    sys.stderr.write(f"wrote {path} ({len(data)} bytes)\n")
    return 0


