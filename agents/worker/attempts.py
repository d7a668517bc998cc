"""Running one attempt of a leased task on this worker: a command in its own process
group, or a chunk of tests in a warm pytest session; its output streamed to DTF_LOGS and
its verdict reported under the lease's fencing token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client

from agents.wire.client import ApiClient
from agents.worker.gpu_slots import GpuSlots
from agents.worker.leases import Attempt
from agents.worker.packs import PlanCache
from agents.worker.pytest.pool import SessionPool
from agents.worker.pytest.server import ExitRequested, SessionFailed
from agents.worker.reporter import Reporter
from agents.worker.runner import TaskUser, run_command
from agents.worker.workdir import command_dir, session_spec
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import DTFError
from dtf_core.events.tests import SESSION_EXIT, SESSION_FAILED, TestCase
from dtf_core.spec import command_config, test_config

log = logging.getLogger(__name__)
T = TypeVar("T")
PLAN_WAIT_S = 600.0  # how long a chunk waits for its run's plan (the submitter collects)
MAX_ERROR = 16 * 1024
Report = Callable[..., None]  # (attempt, kind, **report fields)


async def until_cancelled(attempt: Attempt, coro: Coroutine[Any, Any, T]) -> T | None:
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


@dataclass
class AttemptRunner:
    """What running an attempt needs of its worker. ``report(attempt, kind, **fields)``
    queues a report (the worker drops it while it stops)."""

    nc: Client
    api: ApiClient
    worker_id: str
    cache_dir: Path
    gpu_slots: GpuSlots
    pytest: SessionPool
    reporter: Reporter
    report: Report
    task_user: TaskUser | None = None
    always_unpack: bool = False

    def __post_init__(self) -> None:
        self.js = self.nc.jetstream()
        self.plans = PlanCache()

    async def run(self, attempt: Attempt) -> None:
        """Run ``attempt`` to its end and report it; never raises but for a cancel."""
        lease = attempt.lease
        try:
            spec = lease.spec
            if spec is None:
                raise DTFError("the lease carries no task spec")
            if spec.type == "noop":
                self.report(attempt, "succeeded", started_at=time.time())
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
                self.report(attempt, "started", pid=pid)

            outcome = await run_command(
                cfg, timeout=spec.timeout_seconds, sink=sink, cancel=attempt.cancel,
                on_start=started, user=self.task_user,
            )
            await self._end_output(log_subject)
            self.report(
                attempt, outcome.kind, exit_code=outcome.exit_code, error=outcome.error,
                duration_s=outcome.duration_s, started_at=outcome.started_at,
                permanent=outcome.permanent,
            )
        except Exception as exc:  # one broad except per attempt: the attempt fails, not us
            log.exception("attempt of %s failed inside the worker", lease.task_id)
            self.report(attempt, "failed", error=f"worker error: {exc!r}")
        finally:
            self.gpu_slots.give_back(f"{lease.task_id}/{lease.attempt}")

    async def _run_tests(self, attempt: Attempt) -> None:
        lease = attempt.lease
        assert lease.spec is not None
        cfg = test_config(lease.spec)
        started = time.time()
        self.report(attempt, "started", pid=os.getpid())
        key = (lease.task_id, attempt.fencing, lease.attempt)
        counts: dict[str, int] = {}
        log_subject = subjects.log_subject(lease.task_id, lease.attempt, self.worker_id)

        def on_case(case: TestCase) -> None:
            counts[case.outcome] = counts.get(case.outcome, 0) + 1
            # `dtf logs -f` shows tests as they finish, a batch per report round
            self.reporter.add_case(key, case, log_subject)

        async def ended(kind: str, **fields: Any) -> None:
            await self.reporter.flush_lines()
            await self._end_output(log_subject)
            self.reporter.outbox.finished(key)
            self.report(attempt, kind, duration_s=time.time() - started, started_at=started,
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
                    got = await until_cancelled(
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
                errors = await until_cancelled(attempt, self.pytest.run_chunk(
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

    async def _end_output(self, log_subject: str) -> None:
        """Followers of a task's output (`dtf logs -f`) stop at this mark."""
        try:
            await self.nc.publish(log_subject, b"", headers={"Dtf-Stream": "eof"})
        except nats.errors.Error as exc:
            log.warning("the end of %s's output was not marked: %r", log_subject, exc)

