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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.capabilities import detect
from agents.client import ApiClient
from agents.jetstream_log import parse_ack_reply
from agents.runner import run_command
from agents.security.keyfiles import ensure_private_dir, load_or_create_private_key_file
from agents.security.signing import canonical_bytes, public_key_bytes, sign
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import DTFError, Unavailable
from dtf_core.events.codec import UndecodableEvent, decode
from dtf_core.events.task import TaskCancelRequested, TaskLeased
from dtf_core.ids import validate_id
from dtf_core.spec import command_config
from dtf_core.task import Report

log = logging.getLogger(__name__)
_enc = msgspec.msgpack.Encoder()
MAX_REPORTS = 1000


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
        heartbeat_interval: float = 1.0,
        credential: str | None = None,
        signing_key_dir: Path | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.api = ApiClient(nc, credential=credential)
        self.worker_id = validate_id(worker_id or default_worker_id(), "worker id")
        self.session = uuid.uuid4().hex[:16]
        self.capabilities = detect(tags)
        self.slots = slots or self.capabilities.cpu_count
        # Reports are signed (one signature per batch) with this worker's key, kept in a
        # 0600 file and registered by its public half.
        self.signing_key = None
        if signing_key_dir is not None:
            ensure_private_dir(signing_key_dir)
            self.signing_key = load_or_create_private_key_file(
                signing_key_dir / f"{self.worker_id}.key")
        self.heartbeat_interval = heartbeat_interval
        self.running: dict[str, Attempt] = {}
        self.reports: list[Report] = []
        self._reports_ready = asyncio.Event()
        self._reports_idle = asyncio.Event()
        self._reports_idle.set()
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None
        self.stopping = False

    async def _register(self) -> dict[str, Any]:
        cmd = cmds.RegisterWorker(
            worker_id=self.worker_id, session=self.session, hostname=socket.gethostname(),
            pid=os.getpid(), slots=self.slots, capabilities=self.capabilities,
            signing_key=(public_key_bytes(self.signing_key.public_key())
                         if self.signing_key is not None else None),
        )
        delay = 0.1
        while True:
            try:
                reply: dict[str, Any] = await self.api.call(cmd, timeout=5.0)
                return reply
            except Unavailable as exc:
                log.info("waiting for the api to register: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def run(self) -> None:
        await self._register()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeats())
                tg.create_task(self._reporter())
                await self._consume()
                self.ready.set()
                log.info("worker %s ready (session %s, %d slots)", self.worker_id,
                         self.session, self.slots)
                await asyncio.Event().wait()
        finally:
            await asyncio.shield(self._shutdown())

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
            attempt = Attempt(event, seq)
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

    async def _run_attempt(self, attempt: Attempt) -> None:
        lease = attempt.lease
        try:
            spec = lease.spec
            if spec is None:
                raise DTFError("the lease carries no task spec")
            if spec.type == "noop":
                self._report(attempt, "succeeded", started_at=time.time())
                return
            cfg = command_config(spec)
            log_subject = subjects.log_subject(lease.task_id, lease.attempt, self.worker_id)

            async def sink(stream: str, chunk: bytes) -> None:
                await self.nc.publish(log_subject, chunk, headers={"Dtf-Stream": stream})

            def started(pid: int) -> None:
                self._report(attempt, "started", pid=pid)

            outcome = await run_command(
                cfg, timeout=spec.timeout_seconds, sink=sink, cancel=attempt.cancel,
                on_start=started,
            )
            with contextlib.suppress(Exception):
                await self.nc.publish(log_subject, b"", headers={"Dtf-Stream": "eof"})
            self._report(
                attempt, outcome.kind, exit_code=outcome.exit_code, error=outcome.error,
                duration_s=outcome.duration_s, started_at=outcome.started_at,
            )
        except Exception as exc:  # one broad except per attempt: the attempt fails, not us
            log.exception("attempt of %s failed inside the worker", lease.task_id)
            self._report(attempt, "failed", error=f"worker error: {exc!r}")
        finally:
            if self.running.get(lease.task_id) is attempt:
                self.running.pop(lease.task_id, None)

    def _report(self, attempt: Attempt, kind: str, **fields: Any) -> None:
        if self.stopping:
            return  # the stop requeues this attempt; a verdict now would be wrong
        self.reports.append(
            Report(task_id=attempt.lease.task_id, kind=kind, fencing=attempt.fencing,  # type: ignore[arg-type]
                   worker_id=self.worker_id, attempt=attempt.lease.attempt, **fields)
        )
        self._reports_idle.clear()
        self._reports_ready.set()

    async def _reporter(self) -> None:
        backoff = 0.05
        while True:
            await self._reports_ready.wait()
            self._reports_ready.clear()
            while self.reports:
                batch = self.reports[:MAX_REPORTS]
                try:
                    refused = await self.api.call(self._signed(batch))
                except DTFError as exc:
                    log.warning("reporting %d results failed (%s); retrying", len(batch), exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                del self.reports[: len(batch)]
                for item in refused or ():
                    self._stop_refused(item)
            self._reports_idle.set()

    def _signed(self, reports: list[Report]) -> cmds.ReportResults:
        if self.signing_key is None:
            return cmds.ReportResults(reports=reports)
        return cmds.ReportResults(reports=reports,
                                  signature=sign(self.signing_key, canonical_bytes(reports)))

    def _stop_refused(self, item: dict[str, Any]) -> None:
        attempt = self.running.get(str(item.get("task_id")))
        if attempt is not None:
            log.warning("lease of %s is no longer ours (%s); stopping it", attempt.lease.task_id,
                        item.get("reason"))
            attempt.cancel.set()

    async def _heartbeats(self) -> None:
        subject = subjects.heartbeat_subject(self.worker_id)
        proc = psutil.Process()
        while True:
            beat = {
                "session": self.session,
                "at": time.time(),
                "running": len(self.running),
                "cpu_percent": psutil.cpu_percent(),
                "memory_percent": psutil.virtual_memory().percent,
                "rss_mb": proc.memory_info().rss / 1024**2,
            }
            with contextlib.suppress(Exception):
                await self.nc.publish(subject, _enc.encode(beat))
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
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                if self.reports:
                    await self.api.call(self._signed(list(self.reports)))
                    self.reports.clear()
                await self.api.call(
                    cmds.StopWorker(worker_id=self.worker_id, session=self.session)
                )
                await self.nc.flush()
