"""The DTF side of ``pytest --dtf``: the network work of a run, on a loop of its own.

pytest's hooks run in the main thread; everything that talks to DTF runs on an asyncio loop
in a background thread (``Background``), so that the run can start while pytest is still
collecting here:

1. ``begin`` (at session start): connect, hash the code, and submit the run's chunks. When
   this session key (code, arguments, directory) was collected before, the chunks carry
   that collection's plan and start at once (warm); otherwise they wait on the workers, with
   their sessions collecting, for the plan this side makes once it has collected (cold).
2. ``finish`` (once collected): check the speculation against what pytest collected here
   (any difference: the early chunks are cancelled and the run is planned afresh), write
   the plan, and submit the chunks of tests with other requirements.
3. ``events``: the run's per-test results and its tasks' ends, as they are appended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client

from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect
from agents.wire.client import ApiClient
from agents.wire.projector import measured_durations
from agents.worker.packs import (
    get_collection,
    put_collection,
    put_pack,
    put_plan,
    tree_digest,
    tree_files,
)
from cli.client_cmds import Target
from cli.pytest.planning import Collected, Plan, batches, make_plan
from cli.pytest.split import early_chunks
from dtf_core import subjects
from dtf_core.events.codec import decode
from dtf_core.replies import WorkerRow
from dtf_core.spec import Requirements, TaskSpec

LIVE = ("alive", "idle", "busy")
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
T = TypeVar("T")


def target_from_config(config: pytest.Config) -> Target:
    from agents.host import settings as settings_mod

    cfg = settings_mod.load(server=config.getoption("dtf_server"))
    return Target(cfg.server, settings_mod.credential(cfg, config.getoption("dtf_token_file")),
                  settings_mod.tls_ca(cfg))


class Background:
    """An asyncio loop in a daemon thread; the main thread hands it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dtf-net",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


def session_key(template: dict[str, Any], mode: str) -> str:
    """How pytest was run here: a run with the same key most likely collects what the last
    one did (``finish`` checks, and plans again when it did not)."""
    keyed = {k: template.get(k) for k in ("args", "invocation_dir", "rootdir", "env",
                                          "path0")}
    return hashlib.sha256(msgspec.json.encode([keyed, mode])).hexdigest()


@dataclass
class Begun:
    """What ``begin`` submitted."""

    run_id: str
    start: int  # the log position the run's results come after
    template: dict[str, Any]
    workers: list[WorkerRow]
    key: str
    speculated: Collected | None = None
    plan: Plan | None = None
    early: int = 0  # chunks submitted without their tests (they wait for the plan)
    task_ids: list[str] = field(default_factory=list)
    chunks: list[list[str]] = field(default_factory=list)  # per task id, its tests
    packed_note: str = ""
    plan_name: str = ""  # the object the chunks read their tests from


@dataclass
class Remote:
    nc: Client
    api: ApiClient

    @classmethod
    async def open(cls, target: Target) -> Remote:
        nc = await connect(target.server, "dtf-pytest", reconnect=False,
                           credential=target.credential, tls_ca=target.tls_ca)
        return cls(nc, ApiClient(nc, credential=target.credential))

    async def close(self) -> None:
        await self.nc.close()

    async def durations(self, node_ids: Sequence[str]) -> dict[str, float]:
        """Measured durations from the projection; empty when the projector is not there."""
        out: dict[str, float] = {}
        for batch in batches(node_ids):
            try:
                reply = await measured_durations(self.nc, batch, self.api.headers)
            except (nats.errors.Error, msgspec.DecodeError):  # no projector: no history
                return {}
            if not reply.ok or not isinstance(reply.result, dict):
                return {}
            out.update(reply.result)
        return out

    async def begin(self, run_id: str, template: dict[str, Any], root: Path, *, pack: str,
                    local_host: str, mode: str, run_name: str, timeout: float) -> Begun:
        workers = [w for w in await self.api.workers() if w.state in LIVE]
        remote_hosts = {w.hostname for w in workers} - {local_host}
        packed = pack == "always" or (pack == "auto" and bool(remote_hosts))
        note = ""
        template = {**template, "packed": packed, "run": run_id,
                    "workers": max(1, sum(w.slots for w in workers))}
        if packed:  # the tree goes to other hosts by its content's address
            files = await asyncio.to_thread(tree_files, root)
            code = await asyncio.to_thread(tree_digest, root, files)
            uploaded = await put_pack(self.nc.jetstream(), root, files, code)
            note = f"code pack {code[:12]} ({len(files)} files) " + (
                "uploaded" if uploaded else "already stored")
            template["code"] = code
        key = session_key(template, mode)
        begun = Begun(run_id, await JetStreamLog(self.nc).last_seq() + 1, template, workers,
                      key, packed_note=note, plan_name=run_id)
        if not workers:
            return begun  # nothing to start; every test is unmatched, said later
        known = await get_collection(self.nc.jetstream(), key)
        if known is not None:
            begun.speculated = Collected.decode(known)
            plan = make_plan(begun.speculated, await self.durations(
                [t.nodeid for t in begun.speculated.tests]), workers, mode)
            if plan.unmatched:  # the workers changed since: plan when collected
                begun.speculated = None
            else:
                begun.plan = plan
                await put_plan(self.nc.jetstream(), begun.plan_name,
                               begun.speculated.run_plan(plan))
                await self._submit(begun, [(r, c) for r, c in plan.chunks], run_name, timeout)
                return begun
        begun.early = early_chunks(begun.template["workers"])
        await self._submit(begun, [(Requirements(), []) for _ in range(begun.early)],
                           run_name, timeout)
        return begun

    async def _submit(self, begun: Begun, chunks: list[tuple[Requirements, list[str]]],
                      run_name: str, timeout: float, offset: int = 0) -> None:
        n = len(chunks) + offset
        specs = [TaskSpec(type="test", name=f"pytest chunk {offset + i + 1}/{n}",
                          priority=n - offset - i, requirements=req, timeout_seconds=timeout,
                          config={**begun.template, "plan": begun.plan_name,
                                  "chunk": offset + i})
                 for i, (req, _) in enumerate(chunks)]
        if not specs:
            return
        res = await self.api.submit(specs, run_id=begun.run_id, run_name=run_name)
        begun.task_ids += list(res.ids)
        begun.chunks += [list(c) for _, c in chunks]

    async def finish(self, begun: Begun, collected: Collected, *, mode: str, run_name: str,
                     timeout: float) -> Plan:
        """Once pytest has collected here: keep the speculation when it collected the same,
        else plan now (cancelling what was speculated), and submit the rest."""
        js = self.nc.jetstream()
        if begun.speculated is not None and begun.plan is not None:
            if begun.speculated == collected:
                return begun.plan
            await self.cancel(begun.task_ids, "the collection changed; planned again")
            begun.task_ids, begun.chunks, begun.speculated = [], [], None
            begun.plan_name = begun.run_id + "-2"  # workers may have read the first one
        plan = make_plan(collected, await self.durations([t.nodeid for t in collected.tests]),
                         begun.workers, mode, early=begun.early)
        await put_plan(js, begun.plan_name, collected.run_plan(plan))
        early = len(begun.chunks)
        begun.chunks = [c for _, c in plan.chunks[:early]]
        await self._submit(begun, plan.chunks[early:], run_name, timeout, offset=early)
        await put_collection(js, begun.key, collected.encode())
        return plan

    async def events(self, begun: Begun) -> AsyncIterator[list[Any]]:
        filters = [subjects.tests_filter(begun.run_id),
                   *(f"dtf.evt.task.*.{t}" for t in TERMINAL)]
        async with JetStreamLog(self.nc, opener=self.api.open_tail).tail(
                filters, begun.start) as tail:
            async for batch in tail:
                yield [decode(rec.subject, rec.data) for rec in batch]

    async def cancel(self, task_ids: Sequence[str], reason: str) -> None:
        for task_id in list(task_ids):
            try:
                await self.api.cancel(task_id, reason=reason)
            except Exception:
                pass

    async def submit(self, specs: list[TaskSpec], run_id: str) -> list[str]:
        return list((await self.api.submit(specs, run_id=run_id)).ids)
