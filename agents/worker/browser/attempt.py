"""A browser task as one attempt: its files found (the submitter's directory, or a copy of
its pack), a fresh context taken from the worker's pool, the page run, its console streamed
as the task's output and its verdict reported."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agents.worker.browser import serve
from agents.worker.browser.cdp import BrowserGone
from agents.worker.browser.page import PageRun, Verdict
from agents.worker.leases import Attempt
from dtf_core.browser_spec import BrowserConfig, browser_config, is_url
from dtf_core.errors import DTFError

if TYPE_CHECKING:
    from agents.worker.attempts import AttemptRunner

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 300.0  # a page that never reports must not hold its context forever


def missing_entry(cfg: BrowserConfig, root: Path | None) -> str:
    """Why the page or module cannot be served from ``root``, or ""."""
    rel = cfg.module if cfg.module is not None else cfg.page
    assert rel is not None
    if cfg.module is None and is_url(rel):
        return ""
    if root is None:  # never the worker's own directory
        return f"{rel} has no directory to be served from: give the task's `cwd` (not retried)"
    if not root.is_dir():
        here = socket.gethostname()
        sent = (f"; it was submitted on {cfg.host}: `dtf submit --pack always` sends the "
                "directory to workers on other hosts") if cfg.host not in ("", here) else ""
        return f"its directory {root} does not exist on {here}{sent} (not retried)"
    if serve.local_file(root, serve.entry_url(rel, None)) is None:
        return f"no file {rel} in {root} (not retried)"
    return ""


async def run_browser(runner: AttemptRunner, attempt: Attempt) -> None:
    lease = attempt.lease
    assert lease.spec is not None
    cfg = browser_config(lease.spec)
    where = await runner.task_dir(cfg, "chromium")
    root = Path(where.cwd) if where.cwd else None  # none: only a URL page runs
    started, t0 = time.time(), time.monotonic()
    why = missing_entry(cfg, root)
    if why:
        runner.report(attempt, "failed", error=why, started_at=started, permanent=True)
        return
    log_subject, sink = runner.output(attempt)
    try:
        if runner.browsers is None:
            raise DTFError("this worker runs no browser tasks")
        async with runner.browsers.context() as ctx:
            runner.report(attempt, "started", pid=ctx.browser.pid, started_at=started)
            verdict = await PageRun(ctx, cfg, root, sink).run(
                lease.spec.timeout_seconds or DEFAULT_TIMEOUT_S, attempt.cancel)
    except BrowserGone as exc:  # it died between calls
        verdict = Verdict("failed", f"{exc}; the next task gets a new browser")
    except DTFError as exc:  # no browser here, or it did not answer
        verdict = Verdict("failed", f"browser: {exc}")
    await runner.end_output(log_subject)
    runner.report(attempt, verdict.kind, error=verdict.error, started_at=started,
                  duration_s=time.monotonic() - t0, permanent=verdict.permanent,
                  exit_code=0 if verdict.kind == "succeeded" else None)
