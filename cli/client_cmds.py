"""Client commands: each connects, calls the api (or reads a stream), returns data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client

from agents.nats.connect import connect
from agents.wire.client import ApiClient
from agents.wire.output import served_log
from agents.wire.projector import projector_status
from dtf_core import replies as r
from dtf_core import subjects
from dtf_core.errors import InvalidInput
from dtf_core.events.task import TERMINAL_TYPES
from dtf_core.ids import validate_id
from dtf_core.spec import TaskSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
FILTERS_PER_WAIT = 40


@dataclass(frozen=True)
class Target:
    """Where to send commands, and the credential to present."""

    server: str
    credential: str | None = None
    tls_ca: str | None = None


@asynccontextmanager
async def connected(target: Target) -> AsyncIterator[Client]:
    nc = await connect(target.server, "dtf-cli", reconnect=False,
                       credential=target.credential, tls_ca=target.tls_ca)
    try:
        yield nc
    finally:
        await nc.close()


def client(nc: Client, target: Target) -> ApiClient:
    return ApiClient(nc, credential=target.credential)


async def submit(target: Target, specs: list[TaskSpec], run_name: str = "",
                 pack: str = "never") -> Any:
    async with connected(target) as nc:
        run_id = None
        if len(specs) > 1 or run_name:
            import uuid

            run_id = "r-" + uuid.uuid4().hex[:16]
        api = ApiClient(nc, credential=target.credential)
        specs = await _with_packs(api, specs, pack)
        return await api.submit(specs, run_id=run_id, run_name=run_name)


async def _with_packs(api: ApiClient, specs: list[TaskSpec], pack: str) -> list[TaskSpec]:
    """Command tasks say which host their directory is on; with ``pack`` (auto: when a live
    worker is on another host) that directory's tree goes to the object store, so that a
    worker elsewhere runs the command in a copy of it."""
    import socket
    from pathlib import Path

    import msgspec

    from agents.worker.packs import put_pack, tree_digest, tree_files

    host = socket.gethostname()
    from cli.workdirs import runs_user_code

    if not any(runs_user_code(s) and isinstance(s.config.get("cwd"), str) for s in specs):
        return specs
    if pack == "auto":
        live = [w for w in await api.workers() if w.state == "alive"]
        pack = "always" if any(w.hostname != host for w in live) else "never"
    digests: dict[str, str] = {}
    out = []
    for spec in specs:
        cwd = spec.config.get("cwd") if runs_user_code(spec) else None
        if not isinstance(cwd, str):
            out.append(spec)
            continue
        config = {**spec.config, "host": host}
        if pack == "always":
            if cwd not in digests:
                root = Path(cwd)
                files = await asyncio.to_thread(tree_files, root)
                digests[cwd] = await asyncio.to_thread(tree_digest, root, files)
                await put_pack(api.nc.jetstream(), root, files, digests[cwd])
            config["code"] = digests[cwd]
        out.append(msgspec.structs.replace(spec, config=config))
    return out


async def cancel_run(target: Target, run_id: str) -> list[str]:
    """Cancel every unfinished task of a run; running ones are killed (process group)."""
    validate_id(run_id, "run id")
    async with connected(target) as nc:
        api = ApiClient(nc, credential=target.credential)
        return await api.cancel_run(run_id, f"run {run_id} cancelled")


async def ask(target: Target, question: Callable[[ApiClient], Awaitable[T]]) -> T:
    """One typed call of the api: ``ask(target, lambda api: api.task(task_id))``."""
    async with connected(target) as nc:
        return await question(ApiClient(nc, credential=target.credential))


async def status(target: Target) -> tuple[r.Status, r.ProjectorStatus]:
    """The api's summary, and the projector's position (or why it is not available)."""
    async with connected(target) as nc:
        st = await ApiClient(nc, credential=target.credential).status()
        try:
            projector = await projector_status(nc)
        except (nats.errors.Error, msgspec.DecodeError) as exc:  # optional: say why absent
            log.debug("no projector status: %r", exc)
            projector = r.ProjectorStatus(error=type(exc).__name__)
        return st, projector


async def wait(target: Target, ids: list[str], timeout: float | None,
               progress: Callable[[int, int], None] | None = None,
               ) -> dict[str, r.TaskSummary]:
    """Wait until every task is terminal; returns the final summary of each."""
    for i in ids:
        validate_id(i, "task id")
    async with connected(target) as nc:
        api = ApiClient(nc, credential=target.credential)
        return await wait_terminal(nc, api, ids, timeout, progress)


async def wait_terminal(
    nc: Client, api: ApiClient, ids: list[str], timeout: float | None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, r.TaskSummary]:
    """``progress(ended, total)``: called at the start and as tasks end."""
    summaries = await api.tasks(ids=ids, limit=max(len(ids), 1))
    final = {t.id: t for t in summaries if t.status in TERMINAL_TYPES}
    missing = set(ids) - set(final)
    total = len(set(ids))
    if progress is not None:
        progress(total - len(missing), total)
    if not missing:
        return final
    if len(missing) <= FILTERS_PER_WAIT:
        filters = [f"dtf.evt.task.{i}.{t}" for i in missing for t in TERMINAL_TYPES]
    else:
        filters = [f"dtf.evt.task.*.{t}" for t in TERMINAL_TYPES]
    # A task's end comes after its newest event the api has folded: start there, not at
    # the first event of a log that may hold millions.
    known = [t.last_seq for t in summaries if t.id in missing and t.last_seq]
    start = min(known) + 1 if len(known) == len(missing) else 1
    seen = 0
    async with asyncio.timeout(timeout), served_log(api).tail(filters, start) as tail:
        async for batch in tail:
            for rec in batch:
                missing.discard(rec.subject.split(".")[3])
                seen = max(seen, rec.seq)
            if progress is not None:
                progress(total - len(missing), total)
            if not missing:
                break
    # The api folds the log on its own: ask it to answer once it has folded what we saw.
    summaries = await api.tasks(ids=ids, limit=max(len(ids), 1), min_seq=seen)
    return {t.id: t for t in summaries}


def parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"invalid --env {item!r}: use KEY=VALUE")
        env[key] = value
    return env


async def simulate(target: Target, policy_name: str, from_seq: int,
                   extra_workers: int = 0) -> dict[str, Any]:
    """What happened from ``from_seq`` on, and what ``policy_name`` would have done (with
    ``extra_workers`` more workers)."""
    from dataclasses import asdict

    from agents.control.policy_plugins import load_policy
    from dtf_core.events.codec import UndecodableEvent, decode
    from dtf_core.simulate import History
    from dtf_core.simulate import simulate as run_simulation

    if from_seq < 1:
        raise InvalidInput("--from must be a sequence number, 1 or more")
    if not 0 <= extra_workers <= 10_000:
        raise InvalidInput("--extra-workers takes 0 to 10000")
    policy = load_policy(policy_name)
    async with connected(target) as nc:
        records = await served_log(client(nc, target)).read(list(subjects.STATE_EVENTS),
                                                            from_seq)
    events = []
    for rec in records:
        try:
            events.append((rec.seq, decode(rec.subject, rec.data)))
        except UndecodableEvent:
            continue  # dead-lettered by the agents; not part of the history
    history = History.from_events(events)
    return {"from_seq": from_seq, "policy": policy.name, "extra_workers": extra_workers,
            "actual": asdict(history.actual()),
            "simulated": asdict(run_simulation(history, policy, extra_workers))}
