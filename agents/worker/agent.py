"""The worker agent: registers, receives its leases through a durable consumer, runs them,
streams output to DTF_LOGS, and reports under each lease's fencing token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.keyfiles import ensure_private_dir, load_or_create_private_key_file
from agents.auth.signing import public_key_bytes
from agents.log.jetstream import ack_source, parse_ack_reply
from agents.wire.client import ApiClient
from agents.wire.messages import Heartbeat, encode_heartbeat
from agents.worker.capabilities import detect
from agents.worker.gpu_slots import GpuSlots
from agents.worker.hardware import probe
from agents.worker.packs import PlanCache
from agents.worker.pytest.pool import SessionPool
from agents.worker.pytest.server import ExitRequested, SessionFailed
from agents.worker.reporter import Reporter
from agents.worker.runner import TaskUser, run_command
from agents.worker.workdir import command_dir, session_spec
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import DTFError, Unavailable
from dtf_core.events.codec import UndecodableEvent, decode
from dtf_core.events.task import TaskCancelRequested, TaskLeased
from dtf_core.events.tests import SESSION_EXIT, SESSION_FAILED, TestCase
from dtf_core.ids import validate_id
from dtf_core.placement import overcommit
from dtf_core.replies import Registered
from dtf_core.spec import command_config, test_config
from dtf_core.task import Report

log = logging.getLogger(__name__)
T = TypeVar("T")
PLAN_WAIT_S = 600.0  # how long a chunk waits for its run's plan (the submitter collects)
MAX_ERROR = 16 * 1024


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "dtf"


def default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host[:40] or 'worker'}-{os.getpid()}"


@dataclass
class Attempt:
    lease: TaskLeased
    fencing: int
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerAgent:
    def __init__(
        self,
        nc: Client,
        *,
        worker_id: str | None = None,
        slots: int | None = None,
        tags: tuple[str, ...] = (),
        group: str = "",
        heartbeat_interval: float = 1.0,
        credential: str | None = None,
        signing_key_dir: Path | None = None,
        cache_dir: Path | None = None,
        task_user: str | None = None,
        browsers: bool = True,
        always_unpack: bool = False,
    ) -> None:
        """``browsers``: probe for a headless browser after registering. ``always_unpack``:
        run every task in a copy of its pack, as a worker on another host would."""
        self.nc = nc
        self.browsers = browsers
        self.js = nc.jetstream()
        self.api = ApiClient(nc, credential=credential)
        self.worker_id = validate_id(worker_id or default_worker_id(), "worker id")
        self.session = uuid.uuid4().hex[:16]
        # A headless browser's launch (about 1.5 s) is probed after registering, off the loop.
        self.capabilities = msgspec.structs.replace(detect(tags, browsers=False), group=group)
        self.slots = slots or self.capabilities.cpu_count
        self.gpu_slots = GpuSlots(self.capabilities.gpus)
        # Reports are signed (one signature per batch) with this worker's key, kept in a
        # 0600 file and registered by its public half.
        self.signing_key = None
        if signing_key_dir is not None:
            ensure_private_dir(signing_key_dir)
            self.signing_key = load_or_create_private_key_file(
                signing_key_dir / f"{self.worker_id}.key")
        self.heartbeat_interval = heartbeat_interval
        self.cache_dir = cache_dir or default_cache_dir()
        self.always_unpack = always_unpack
        # Tasks as another account (--task-user): they cannot read the stack's credentials.
        self.task_user = TaskUser.lookup(task_user) if task_user else None
        self.pytest = SessionPool(self.cache_dir / "logs", self.worker_id, user=self.task_user)
        self.plans = PlanCache()
        self.running: dict[str, Attempt] = {}
        self.fencing_seen: set[int] = set()  # every lease this session took: each runs once
        self.lease_consumer = subjects.lease_consumer(self.worker_id)
        self.reporter = Reporter(self.api, self.worker_id, self.signing_key, nc,
                                 on_refused=self._stop_refused)
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None
        self.stopping = False

    async def _register(self) -> Registered:
        cmd = cmds.RegisterWorker(
            worker_id=self.worker_id, session=self.session, hostname=socket.gethostname(),
            pid=os.getpid(), slots=self.slots, capabilities=self.capabilities,
            signing_key=(public_key_bytes(self.signing_key.public_key())
                         if self.signing_key is not None else None),
        )
        delay = 0.1
        while True:
            try:
                return await self.api.register(cmd, timeout=5.0)
            except Unavailable as exc:
                log.info("waiting for the api to register: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def run(self) -> None:
        self.pytest.keep_spare()
        await self._register()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeats())
                tg.create_task(self.reporter.run())
                await self._consume()
                if self.browsers:
                    tg.create_task(self._detect_browsers())
                self.ready.set()
                log.info("worker %s ready (session %s, %d slots)", self.worker_id,
                         self.session, self.slots)
                await asyncio.Event().wait()
        finally:
            await asyncio.shield(self._shutdown())

    async def _detect_browsers(self) -> None:
        """Browser features, found after registering, join the capabilities by an event."""
        web, note = await asyncio.to_thread(probe.browser)
        if note:
            log.info("capabilities: %s", note)
        hardware = self.capabilities.hardware
        if not set(web) - set(hardware):
            return
        self.capabilities = msgspec.structs.replace(
            self.capabilities, hardware=(*hardware, *(w for w in web if w not in hardware)))
        try:
            await self.api.update_capabilities(cmds.UpdateCapabilities(
                worker_id=self.worker_id, session=self.session, capabilities=self.capabilities))
            log.info("capabilities: %s added after registering", ", ".join(web))
        except DTFError as exc:  # placement goes on without them; said in the log
            log.warning("could not add the browser capabilities %s: %s", web, exc)

    async def _consume(self) -> None:
        """Bind to the lease consumer the api opened for this session at registration."""
        name = subjects.lease_consumer(self.worker_id)
        info = await self.js.consumer_info(subjects.EVENTS_STREAM, name)
        if info.config.deliver_subject != subjects.lease_delivery(self.worker_id, self.session):
            raise Unavailable(f"consumer {name} belongs to another session of this worker")
        self._sub = await self.js.subscribe_bind(
            subjects.EVENTS_STREAM, info.config, name, cb=self._on_lease, manual_ack=True,
            pending_msgs_limit=10_000_000, pending_bytes_limit=1024**3,
        )

    async def _on_lease(self, msg: Msg) -> None:
        # Only what this worker's own consumer (the one the api opened) delivers is a
        # lease: anyone able to aim a delivery or a reply at this inbox could otherwise
        # make it run a task again.
        if ack_source(msg.reply) != (subjects.EVENTS_STREAM, self.lease_consumer):
            log.warning("ignoring a message on the lease inbox that this worker's consumer "
                        "did not deliver (subject %s)", msg.subject[:200])
            return
        try:
            seq = parse_ack_reply(msg.reply)[0]
            event = decode(msg.subject, msg.data)
        except (UndecodableEvent, ValueError, IndexError) as exc:
            log.warning("ignoring undecodable lease message on %s: %s", msg.subject, exc)
            await msg.ack()
            return
        await msg.ack()
        if isinstance(event, TaskLeased):
            if event.session != self.session or event.worker_id != self.worker_id:
                return  # a lease for an earlier incarnation: recovery requeues it
            if seq in self.fencing_seen:
                log.warning("lease %d of %s delivered again; it runs once", seq, event.task_id)
                return
            self.fencing_seen.add(seq)
            attempt = Attempt(event, seq)
            overcommit = self._overcommit(event)
            if overcommit:
                log.warning("declining the lease of %s: %s", event.task_id, overcommit)
                self._report(attempt, "declined", error=overcommit)
                return
            if event.spec is not None and event.spec.type == "noop":
                self._report(attempt, "succeeded", started_at=time.time())  # no work, no task
                return
            self.running[event.task_id] = attempt
            task = asyncio.create_task(self._run_attempt(attempt))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(event, TaskCancelRequested):
            running = self.running.get(event.task_id)
            if running is not None:
                running.cancel.set()

    def _overcommit(self, lease: TaskLeased) -> str:
        """The worker enforces the reservations of what runs here too."""
        if lease.spec is None:
            return ""
        running = [a.lease.spec.requirements for a in self.running.values() if a.lease.spec]
        return overcommit(running, lease.spec.requirements, self.slots, self.capabilities)

    async def _run_attempt(self, attempt: Attempt) -> None:
        lease = attempt.lease
        try:
            spec = lease.spec
            if spec is None:
                raise DTFError("the lease carries no task spec")
            if spec.type == "noop":
                self._report(attempt, "succeeded", started_at=time.time())
                return
            if spec.type == "test":
                await self._run_tests(attempt)
                return
            cfg = await command_dir(self.js, self.cache_dir, command_config(spec),
                                  always_unpack=self.always_unpack)
            if cfg.secret_env:  # sealed in the log: the api opens them for the lease holder
                secrets = await self.api.secrets(cmds.GetSecrets(
                    worker_id=self.worker_id, task_id=lease.task_id, fencing=attempt.fencing))
                cfg = msgspec.structs.replace(cfg, env={**cfg.env, **secrets}, secret_env={})
            pinned = self.gpu_slots.take(f"{lease.task_id}/{lease.attempt}",
                                         spec.requirements.gpus)
            if pinned:
                cfg = msgspec.structs.replace(cfg, env={**cfg.env, **pinned})
            log_subject = subjects.log_subject(lease.task_id, lease.attempt, self.worker_id)

            async def sink(stream: str, chunk: bytes) -> None:
                await self.nc.publish(log_subject, chunk, headers={"Dtf-Stream": stream})

            def started(pid: int) -> None:
                self._report(attempt, "started", pid=pid)

            outcome = await run_command(
                cfg, timeout=spec.timeout_seconds, sink=sink, cancel=attempt.cancel,
                on_start=started, user=self.task_user,
            )
            with contextlib.suppress(Exception):
                await self.nc.publish(log_subject, b"", headers={"Dtf-Stream": "eof"})
            self._report(
                attempt, outcome.kind, exit_code=outcome.exit_code, error=outcome.error,
                duration_s=outcome.duration_s, started_at=outcome.started_at,
                permanent=outcome.permanent,
            )
        except Exception as exc:  # one broad except per attempt: the attempt fails, not us
            log.exception("attempt of %s failed inside the worker", lease.task_id)
            self._report(attempt, "failed", error=f"worker error: {exc!r}")
        finally:
            self.gpu_slots.give_back(f"{lease.task_id}/{lease.attempt}")
            if self.running.get(lease.task_id) is attempt:
                self.running.pop(lease.task_id, None)

    async def _run_tests(self, attempt: Attempt) -> None:
        lease = attempt.lease
        assert lease.spec is not None
        cfg = test_config(lease.spec)
        started = time.time()
        self._report(attempt, "started", pid=os.getpid())
        key = (lease.task_id, attempt.fencing, lease.attempt)
        counts: dict[str, int] = {}
        log_subject = subjects.log_subject(lease.task_id, lease.attempt, self.worker_id)

        def on_case(case: TestCase) -> None:
            counts[case.outcome] = counts.get(case.outcome, 0) + 1
            # `dtf logs -f` shows tests as they finish, a batch per report round
            self.reporter.add_case(key, case, log_subject)

        async def ended(kind: str, **fields: Any) -> None:
            await self.reporter.flush_lines()
            with contextlib.suppress(Exception):
                await self.nc.publish(log_subject, b"", headers={"Dtf-Stream": "eof"})
            self.reporter.outbox.finished(key)
            self._report(attempt, kind, duration_s=time.time() - started, started_at=started,
                         **fields)

        deadline = asyncio.timeout(lease.spec.timeout_seconds)
        try:
            async with deadline:
                spec = await session_spec(self.js, self.cache_dir, cfg,
                                          always_unpack=self.always_unpack)
                # The session collects while the submitter does: the plan comes after.
                self.pytest.prepare(spec)
                node_ids, collection = list(cfg.node_ids), ""
                if not node_ids:
                    got = await self._wait_cancellable(
                        attempt, self.plans.chunk(self.js, cfg.plan or "", cfg.chunk,
                                                  wait=PLAN_WAIT_S))
                    if got is None:
                        await ended("cancelled", error="cancelled")
                        return
                    node_ids, collection = got
                if not node_ids:  # more chunks were submitted than the run had units
                    await ended("succeeded", exit_code=0)
                    return
                # A cancel kills the chunk's process and what it started.
                errors = await self._wait_cancellable(attempt, self.pytest.run_chunk(
                    spec, node_ids, on_case, run_id=cfg.run or lease.task_id, workers=cfg.workers,
                    collection=collection))
                if errors is None:
                    await ended("cancelled", error="cancelled")
                    return
        except TimeoutError:
            if not deadline.expired():
                raise  # a NATS request timing out is an error, not the chunk's timeout
            await ended("timed_out", error="the test chunk ran past its timeout")
            return
        except SessionFailed as exc:
            await ended("failed", exit_code=exc.exit_code,
                        error=f"{SESSION_FAILED} on worker {self.worker_id}: {exc}"[:MAX_ERROR])
            return
        except ExitRequested as exc:
            await ended("failed", exit_code=exc.returncode,
                        error=f"{SESSION_EXIT}{exc}"[:MAX_ERROR])
            return
        bad = sum(counts.get(k, 0) for k in ("failed", "error", "crashed"))
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        if errors:
            summary += f"; {len(errors)} collection errors on the worker"
        await ended("failed" if bad or errors else "succeeded",
                    exit_code=1 if bad or errors else 0, error=summary if bad else "")

    async def _wait_cancellable(self, attempt: Attempt,
                                coro: Coroutine[Any, Any, T]) -> T | None:
        """What ``coro`` returns, or None when the attempt is cancelled first."""
        task = asyncio.ensure_future(coro)
        cancel = asyncio.ensure_future(attempt.cancel.wait())
        try:
            await asyncio.wait({task, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return None if task.cancelled() else task.result()

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

    async def _heartbeats(self) -> None:
        subject = subjects.heartbeat_subject(self.worker_id)
        proc = psutil.Process()
        while True:
            beat = Heartbeat(
                session=self.session, at=time.time(), running=len(self.running),
                # the leases this session holds (running, or finished and not yet reported):
                # recovery requeues a lease its worker never got
                leases=sorted({a.fencing for a in self.running.values()}
                              | {r.fencing for r in self.reporter.reports}),
                cpu_percent=psutil.cpu_percent(),
                memory_percent=psutil.virtual_memory().percent,
                rss_mb=proc.memory_info().rss / 1024**2)
            with contextlib.suppress(Exception):
                await self.nc.publish(subject, encode_heartbeat(beat))
            await asyncio.sleep(self.heartbeat_interval)

    async def _shutdown(self) -> None:
        """Stop cleanly: kill running attempts, flush reports, tell the log we stopped.
        Recovery then requeues what was running without spending its retry budget."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pytest.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.reporter.send_held()
                await self.api.stop_worker(self.worker_id, self.session)
                await self.nc.flush()

