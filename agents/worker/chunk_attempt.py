"""A chunk of a distributed pytest run, as one attempt: the chunk's tests run in a warm
session, each result reported as it ends, the verdict reported with the last of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from agents.worker.leases import Attempt
from agents.worker.pytest.server import ExitRequested, SessionFailed
from agents.worker.workdir import session_spec
from dtf_core import subjects
from dtf_core.events.tests import SESSION_EXIT, SESSION_FAILED, TestCase
from dtf_core.spec import test_config

if TYPE_CHECKING:
    from agents.worker.attempts import AttemptRunner

PLAN_WAIT_S = 600.0  # how long a chunk waits for its run's plan (the submitter collects)
MAX_ERROR = 16 * 1024
T = TypeVar("T")


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



async def run_tests(runner: AttemptRunner, attempt: Attempt) -> None:
    """A chunk of a pytest run in the worker's warm session for its tree."""
    lease = attempt.lease
    assert lease.spec is not None
    cfg = test_config(lease.spec)
    started = time.time()
    runner.report(attempt, "started", pid=os.getpid())
    key = (lease.task_id, attempt.fencing, lease.attempt)
    counts: dict[str, int] = {}
    log_subject = subjects.log_subject(lease.task_id, lease.attempt, runner.worker_id)

    def on_case(case: TestCase) -> None:
        counts[case.outcome] = counts.get(case.outcome, 0) + 1
        # `dtf logs -f` shows tests as they finish, a batch per report round
        runner.reporter.add_case(key, case, log_subject)

    async def ended(kind: str, **fields: Any) -> None:
        await runner.reporter.flush_lines()
        await runner.end_output(log_subject)
        runner.reporter.outbox.finished(key)
        runner.report(attempt, kind, duration_s=time.time() - started, started_at=started,
                     **fields)

    deadline = asyncio.timeout(lease.spec.timeout_seconds)
    try:
        async with deadline:
            spec = await session_spec(runner.js, runner.cache_dir, cfg,
                                      always_unpack=runner.always_unpack)
            # The session collects while the submitter does: the plan comes after.
            runner.pytest.prepare(spec)
            node_ids, collection = list(cfg.node_ids), ""
            if not node_ids:
                got = await until_cancelled(
                    attempt, runner.plans.chunk(runner.js, cfg.plan or "", cfg.chunk,
                                              wait=PLAN_WAIT_S))
                if got is None:
                    await ended("cancelled", error="cancelled")
                    return
                node_ids, collection = got
            if not node_ids:  # more chunks were submitted than the run had units
                await ended("succeeded", exit_code=0)
                return
            # A cancel kills the chunk's process and what it started.
            errors = await until_cancelled(attempt, runner.pytest.run_chunk(
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
                    error=f"{SESSION_FAILED} on worker {runner.worker_id}: {exc}"[:MAX_ERROR])
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
