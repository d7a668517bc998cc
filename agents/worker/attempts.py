"""Running one attempt of a leased task on this worker: a command in its own process
group, or a chunk of tests in a warm pytest session; its output streamed to DTF_LOGS and
its verdict reported under the lease's fencing token."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
import nats.errors
from nats.aio.client import Client

from agents.wire.client import ApiClient
from agents.worker.bench import run as bench_run
from agents.worker.browser.attempt import run_browser
from agents.worker.browser.pool import BrowserPool
from agents.worker.chunk_attempt import run_tests
from agents.worker.gpu_slots import GpuSlots
from agents.worker.leases import Attempt
from agents.worker.packs import PlanCache
from agents.worker.pytest.pool import SessionPool
from agents.worker.reporter import Reporter
from agents.worker.runner import Outcome, OutputSink, TaskUser, run_command
from agents.worker.workdir import command_dir
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import DTFError
from dtf_core.events.worker import Capabilities
from dtf_core.spec import CommandConfig, benchmark_config, command_config

log = logging.getLogger(__name__)
Report = Callable[..., None]  # (attempt, kind, **report fields)


class Placed(Protocol):
    """A task config that names where its files are (a command's, a benchmark's, a
    browser task's)."""

    @property
    def cwd(self) -> str | None: ...
    @property
    def host(self) -> str: ...
    @property
    def code(self) -> str | None: ...


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
    capabilities: Callable[[], Capabilities]
    task_user: TaskUser | None = None
    always_unpack: bool = False
    browsers: BrowserPool | None = None  # browser tasks' contexts (None: no browser tasks)

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
                await run_tests(self, attempt)
                return
            if spec.type == "benchmark":
                await self._run_benchmark(attempt)
                return
            if spec.type == "browser":
                await run_browser(self, attempt)
                return
            cfg = await command_dir(self.js, self.cache_dir, command_config(spec),
                                  always_unpack=self.always_unpack)
            if cfg.secret_env:  # sealed in the log: the api opens them for the lease holder
                secrets = await self.api.secrets(cmds.GetSecrets(
                    worker_id=self.worker_id, task_id=lease.task_id, fencing=attempt.fencing))
                cfg = msgspec.structs.replace(cfg, env={**cfg.env, **secrets}, secret_env={})
            pinned = self.gpu_slots.take(f"{lease.task_id}/{lease.attempt}",
                                         spec.requirements.gpus)
            cfg = msgspec.structs.replace(cfg, env={**cfg.env, **pinned})
            self._report_outcome(attempt, await self._process(attempt, cfg))
        except Exception as exc:  # one broad except per attempt: the attempt fails, not us
            log.exception("attempt of %s failed inside the worker", lease.task_id)
            self.report(attempt, "failed", error=f"worker error: {exc!r}")
        finally:
            self.gpu_slots.give_back(f"{lease.task_id}/{lease.attempt}")

    def _report_outcome(self, attempt: Attempt, outcome: Outcome, **fields: Any) -> None:
        self.report(
            attempt, outcome.kind, exit_code=outcome.exit_code, error=outcome.error,
            duration_s=outcome.duration_s, started_at=outcome.started_at,
            permanent=outcome.permanent, max_rss_mb=outcome.max_rss_mb, **fields,
        )

    async def task_dir(self, cfg: Placed, tool: str) -> CommandConfig:
        """Where a task's files are: the submitter's directory on this host, or a copy of
        its pack (``tool`` only names what would run there, in errors)."""
        return await command_dir(self.js, self.cache_dir, CommandConfig(
            argv=(tool,), cwd=cfg.cwd, host=cfg.host, code=cfg.code),
            always_unpack=self.always_unpack)

    def output(self, attempt: Attempt) -> tuple[str, OutputSink]:
        """The attempt's output subject, and a sink that streams a chunk onto it."""
        lease = attempt.lease
        log_subject = subjects.log_subject(lease.task_id, lease.attempt, self.worker_id)

        async def sink(stream: str, chunk: bytes) -> None:
            await self.nc.publish(log_subject, chunk, headers={"Dtf-Stream": stream})

        return log_subject, sink

    async def _process(self, attempt: Attempt, cfg: CommandConfig) -> Outcome:
        """``cfg`` run in its own process group, its output streamed and then ended."""
        lease = attempt.lease
        log_subject, sink = self.output(attempt)
        outcome = await run_command(
            cfg, timeout=lease.spec.timeout_seconds if lease.spec else None, sink=sink,
            cancel=attempt.cancel, on_start=lambda pid: self.report(attempt, "started", pid=pid),
            user=self.task_user)
        await self.end_output(log_subject)
        return outcome

    async def _run_benchmark(self, attempt: Attempt) -> None:
        """The harness runs where a command would (the submitter's directory, or a copy
        of its pack), with the task's environment and its pinned GPUs."""
        lease = attempt.lease
        assert lease.spec is not None
        cfg = benchmark_config(lease.spec)
        where = await self.task_dir(cfg, "python")
        reserved = lease.spec.requirements.gpus
        pinned = self.gpu_slots.take(f"{lease.task_id}/{lease.attempt}", reserved)
        user = self.task_user
        measured = await bench_run.measure(
            cfg, cwd=where.cwd, env={**cfg.env, **pinned}, caps=self.capabilities(),
            exclusive=lease.spec.requirements.exclusive,
            on_gpu=bool(reserved) or "cuda" in lease.spec.requirements.hardware,
            run=lambda command: self._process(attempt, command),
            chown=user.own if user else None)
        self._report_outcome(attempt, measured.outcome, benchmark=measured.result)

    async def end_output(self, log_subject: str) -> None:
        """Followers of a task's output (`dtf logs -f`) stop at this mark."""
        try:
            await self.nc.publish(log_subject, b"", headers={"Dtf-Stream": "eof"})
        except nats.errors.Error as exc:
            log.warning("the end of %s's output was not marked: %r", log_subject, exc)

