"""`dtf rerun TASK [--equivalent-host]`: submit a task again, as it was submitted; with
``--equivalent-host``, only onto a worker whose hardware fingerprint is the one its
benchmark result was measured on (so the two numbers compare)."""

from __future__ import annotations

import argparse
import sys

import msgspec

from agents.host import loop as agent_loop
from agents.wire.client import ApiClient
from cli import render
from cli.client_cmds import Target, connected
from cli.results_cmds import Client, projector_errors
from dtf_core.errors import InvalidInput, NotFound
from dtf_core.ids import validate_id
from dtf_core.replies import ResultsQuery
from dtf_core.spec import TaskSpec, validate_spec


def add_parser(client: Client) -> None:
    rr = client("rerun", "submit a task again; a benchmark on a host like the one it ran on")
    rr.add_argument("id", help="the task (for --equivalent-host: one with a benchmark result)")
    rr.add_argument("--equivalent-host", action="store_true",
                    help="only on a worker with the hardware fingerprint of its result")


def again(spec: dict[str, object], task_id: str) -> TaskSpec:
    """The spec as submitted, without its id: refused when the viewer cannot see it all."""
    from agents.control.queries import HIDDEN, SEALED

    config = spec.get("config")
    if isinstance(config, dict):
        values = [*(config.get("env") or {}).values(), *(config.get("secret_env") or {}).values()]
        if SEALED in values:
            raise InvalidInput(f"{task_id} has sealed environment values, which nobody can "
                               "read back: submit it again with --secret-env")
        if HIDDEN in values:
            raise InvalidInput(f"{task_id}'s environment values are hidden from you: only its "
                               "submitter or an admin can rerun it")
    try:
        old = msgspec.convert(spec, TaskSpec)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{task_id}'s spec cannot be submitted again: {exc}") from None
    return msgspec.structs.replace(old, id=None, idempotency_key=None)


async def rerun(target: Target, task_id: str, equivalent: bool) -> tuple[str, str | None, int]:
    """(the new task's id, the fingerprint it needs or None, live workers that have it)."""
    from agents.wire.projector import refusal, results

    validate_id(task_id, "task id")
    async with connected(target) as nc:
        api = ApiClient(nc, credential=target.credential)
        spec = again((await api.task(task_id)).spec, task_id)
        fingerprint = None
        if equivalent:
            async with projector_errors():
                table = await results(nc, ResultsQuery(task_id=task_id))
            if not table.ok:
                raise refusal(table.error, table.retryable)
            if not table.rows:
                raise NotFound(f"{task_id} has no benchmark result: --equivalent-host reruns "
                               "a benchmark on the hardware its result was measured on")
            fingerprint = str(table.rows[-1][table.columns.index("fingerprint")])
            spec = msgspec.structs.replace(spec, requirements=msgspec.structs.replace(
                spec.requirements, fingerprint=fingerprint))
        res = await api.submit([validate_spec(spec)], run_name=f"rerun of {task_id}")
        matching = 0
        if fingerprint is not None:
            matching = sum(w.state == "alive" and w.capabilities.fingerprint == fingerprint
                           for w in await api.workers(heartbeats=False))
        return res.ids[0], fingerprint, matching


def rerun_cmd(args: argparse.Namespace, target: Target) -> int:
    new_id, fingerprint, matching = agent_loop.run(rerun(target, args.id, args.equivalent_host))
    if args.json:
        render.emit_json({"id": new_id, "fingerprint": fingerprint,
                          "matching_workers": matching})
    else:
        render.out(new_id)
    if fingerprint is not None and matching == 0:
        sys.stderr.write(f"dtf: no live worker has hardware fingerprint {fingerprint} now; "
                         f"{new_id} waits for one (`dtf explain {new_id}`)\n")
    return 0
