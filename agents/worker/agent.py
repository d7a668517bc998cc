"""The worker agent: registers a new session, takes its leases (``leases.py``), runs each
attempt (``attempts.py``), reports under each lease's fencing token (``reporter.py``) and
beats its heart (``heartbeats.py``); stops cleanly, so recovery requeues at no cost."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client

from agents.auth.keyfiles import ensure_private_dir, load_or_create_private_key_file
from agents.auth.signing import public_key_bytes
from agents.wire.client import ApiClient
from agents.worker.attempts import AttemptRunner
from agents.worker.browser.pool import MAX_CONTEXTS, RECYCLE_AFTER, BrowserPool
from agents.worker.capabilities import detect, with_browsers
from agents.worker.gpu_slots import GpuSlots
from agents.worker.heartbeats import beat_forever
from agents.worker.leases import Attempt, LeaseIntake
from agents.worker.pytest.pool import SessionPool
from agents.worker.reporter import Reporter
from agents.worker.runner import TaskUser
from dtf_core import commands as cmds
from dtf_core.errors import DTFError, InvalidInput, Unavailable
from dtf_core.events.worker import Capabilities
from dtf_core.ids import validate_id
from dtf_core.placement import overcommit
from dtf_core.replies import Registered
from dtf_core.spec import Requirements, TaskSpec
from dtf_core.task import Report

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "dtf"


def signing_key(key_dir: Path | None, worker_id: str) -> Ed25519PrivateKey | None:
    """Reports are signed (one signature per batch) with this worker's key, kept in a
    0600 file and registered by its public half."""
    if key_dir is None:
        return None
    ensure_private_dir(key_dir)
    return load_or_create_private_key_file(key_dir / f"{worker_id}.key")


def default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host[:40] or 'worker'}-{os.getpid()}"


async def register(api: ApiClient, cmd: cmds.RegisterWorker, nc: Any = None,
                   reporter: Reporter | None = None) -> Registered:
    """Register this session, waiting for an api to answer (it may start after us);
    ``reporter`` then tags its batches with the session's report key (ADR 0020)."""
    delay = 0.1
    while True:
        try:
            registered = await api.register(cmd, timeout=5.0)
            if reporter is not None:
                reporter.report_key = registered.report_key
            return registered
        except Unavailable as exc:
            refused_inbox(nc, cmd.worker_id)
            log.info("waiting for the api to register: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def refused_inbox(nc: Any, worker_id: str) -> None:
    """The server refused this worker its inbox, where the api answers: the credential
    is another worker's (a worker key is scoped to the id it was made for)."""
    if any("subscription" in e.lower() and f"_inbox.worker.{worker_id}.".lower() in e.lower()
           for e in getattr(nc, "server_errors", ())):
        raise InvalidInput(
            f"this credential is not worker {worker_id!r}'s: the server keeps its answers "
            f"from it. A worker key works with the --id it was made for; make one for this "
            f"id with `dtf worker-key create {worker_id}`")


def why_decline(spec: TaskSpec | None, running: list[Requirements], slots: int,
                caps: Capabilities) -> str:
    """Why this worker declines a lease ("" when it takes it): a task type it does not
    run (placed by a scheduler that did not know: an older one), or the reservations of
    its running tasks would overcommit it."""
    if spec is None:
        return ""
    refused = caps.refuses(spec.type)
    if refused is not None:
        return f"this worker does not run {spec.type} tasks: {refused}"
    return overcommit(running, spec.requirements, slots, caps)


class WorkerAgent:
    def __init__(
        self, nc: Client, *, worker_id: str | None = None, slots: int | None = None,
        tags: tuple[str, ...] = (), group: str = "",
        heartbeat_interval: float = 1.0, credential: str | None = None,
        signing_key_dir: Path | None = None,
        cache_dir: Path | None = None,
        task_user: str | None = None,
        browsers: bool = True,
        always_unpack: bool = False,
        browser_contexts: int = MAX_CONTEXTS, browser_recycle: int = RECYCLE_AFTER,
    ) -> None:
        """``browsers``: probe for a headless browser after registering. ``always_unpack``:
        run every task in a copy of its pack, as a worker on another host would."""
        self.nc = nc
        self.browsers = browsers
        self.api = ApiClient(nc, credential=credential)
        self.worker_id = validate_id(worker_id or default_worker_id(), "worker id")
        self.session = uuid.uuid4().hex[:16]
        # A headless browser's launch (about 1.5 s) is probed after registering, off the loop.
        self.capabilities = msgspec.structs.replace(detect(tags, browsers=False), group=group)
        self.slots = slots or self.capabilities.cpu_count
        self.gpu_slots = GpuSlots(self.capabilities.gpus)
        self.signing_key = signing_key(signing_key_dir, self.worker_id)
        self.heartbeat_interval = heartbeat_interval
        cache_dir = cache_dir or default_cache_dir()
        # Tasks as another account (--task-user): they cannot read the stack's credentials.
        user = TaskUser.lookup(task_user) if task_user else None
        self.pytest = SessionPool(cache_dir / "logs", self.worker_id, user=user)
        self.browser = BrowserPool(cache_dir / "browser", browser_contexts, browser_recycle, user)
        self.reporter = Reporter(self.api, self.worker_id, self.signing_key, nc,
                                 on_refused=self._stop_refused)
        self.attempts = AttemptRunner(
            nc, self.api, self.worker_id, cache_dir, self.gpu_slots, self.pytest,
            self.reporter, self._report, lambda: self.capabilities, task_user=user,
            always_unpack=always_unpack, browsers=self.browser)
        self.leases = LeaseIntake(nc.jetstream(), self.worker_id, self.session,
                                  on_lease=self._on_lease, on_cancel=self._on_cancel)
        self.running: dict[str, Attempt] = {}
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    async def _register(self) -> Registered:  # at the start, and again when declared lost
        key = public_key_bytes(self.signing_key.public_key()) if self.signing_key else None
        return await register(self.api, nc=self.nc, reporter=self.reporter, cmd=cmds.RegisterWorker(
            worker_id=self.worker_id, session=self.session, hostname=socket.gethostname(),
            pid=os.getpid(), slots=self.slots, capabilities=self.capabilities,
            signing_key=key, heartbeat_interval=self.heartbeat_interval))

    async def run(self) -> None:
        if self.capabilities.refuses("test") is None:
            self.pytest.spares.keep()  # pytest sessions started ahead of the first chunk
        await self._register()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(beat_forever(
                    self.nc, self.worker_id, self.session, self.heartbeat_interval,
                    running=lambda: len(self.running), leases=self._held,
                    resends=lambda: self.reporter.resends, rejoin=self._register))
                tg.create_task(self.reporter.run())
                await self.leases.start()
                if self.browsers:
                    tg.create_task(self._detect_browsers())
                self.ready.set()
                log.info("worker %s ready (session %s, %d slots)", self.worker_id,
                         self.session, self.slots)
                await asyncio.Event().wait()
        finally:
            await asyncio.shield(self._shutdown())

    def _held(self) -> set[int]:  # running, or ended and not reported (recovery requeues others)
        held = {a.fencing for a in self.running.values()}
        return held | {r.fencing for r in self.reporter.reports}

    async def _detect_browsers(self) -> None:
        """Browser features, found after registering, join the capabilities by an event."""
        caps, added = await asyncio.to_thread(with_browsers, self.capabilities)
        if not added:  # nothing new to place by (the probe's note is in the worker's log)
            return
        self.capabilities = caps
        try:
            await self.api.update_capabilities(cmds.UpdateCapabilities(
                worker_id=self.worker_id, session=self.session, capabilities=caps))
            log.info("capabilities: %s added after registering", ", ".join(added))
        except DTFError as exc:  # placement goes on without them; said in the log
            log.warning("could not add the browser capabilities %s: %s", added, exc)

    def _on_lease(self, attempt: Attempt) -> None:
        lease = attempt.lease
        running = [a.lease.spec.requirements for a in self.running.values() if a.lease.spec]
        declined = why_decline(lease.spec, running, self.slots, self.capabilities)
        if declined:
            log.warning("declining the lease of %s: %s", lease.task_id, declined)
            self._report(attempt, "declined", error=declined)
            return
        if lease.spec is not None and lease.spec.type == "noop":
            self._report(attempt, "succeeded", started_at=time.time())  # no work, no task
            return
        self.running[lease.task_id] = attempt
        task = asyncio.create_task(self._run(attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, attempt: Attempt) -> None:
        try:
            await self.attempts.run(attempt)
        finally:
            if self.running.get(attempt.lease.task_id) is attempt:
                self.running.pop(attempt.lease.task_id, None)

    def _on_cancel(self, task_id: str) -> None:
        running = self.running.get(task_id)
        if running is not None:
            running.cancel.set()

    def _report(self, attempt: Attempt, kind: str, **fields: Any) -> None:
        if self.stopping:
            return  # the stop requeues this attempt; a verdict now would be wrong
        self.reporter.report(Report(
            task_id=attempt.lease.task_id, kind=kind, fencing=attempt.fencing,  # type: ignore[arg-type]
            worker_id=self.worker_id, attempt=attempt.lease.attempt, **fields))

    def _stop_refused(self, item: cmds.ReportOutcome) -> None:
        attempt = self.running.get(item.task_id)
        if attempt is not None:
            log.warning("lease of %s is no longer ours (%s); stopping it", attempt.lease.task_id,
                        item.reason)
            attempt.cancel.set()

    async def _shutdown(self) -> None:
        """Stop cleanly: kill running attempts, flush reports, tell the log we stopped.
        Recovery then requeues what was running without spending its retry budget."""
        await self.leases.stop()
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pytest.close()
        await self.browser.close()
        try:
            if not self.nc.is_connected:  # nothing can be sent: do not wait for it
                raise Unavailable("NATS is unreachable")
            async with asyncio.timeout(5):
                await self.reporter.send_held()
                await self.api.stop_worker(self.worker_id, self.session)
                await self.nc.flush()
        except (DTFError, nats.errors.Error, TimeoutError) as exc:
            log.warning("could not report the stop (%r): recovery will find this worker "
                        "silent and requeue its tasks", exc)
