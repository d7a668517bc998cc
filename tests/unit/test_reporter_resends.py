"""A worker counts the report batches it sends again (heartbeats carry the count, and
/metrics sums it): an api that does not answer costs one resend per try."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.worker.reporter import Reporter
from dtf_core import commands as cmds
from dtf_core.errors import Unavailable
from dtf_core.task import Report

pytestmark = pytest.mark.anyio


class FlakyApi:
    """Answers the third report call; the first two get no answer (as from a dead api)."""

    def __init__(self) -> None:
        self.calls = 0
        self.answered = asyncio.Event()

    async def report(self, cmd: cmds.ReportResults, timeout: float | None = None) -> list[Any]:
        self.calls += 1
        if self.calls < 3:
            raise Unavailable("the api agent did not answer in time")
        self.answered.set()
        return []


async def test_each_failed_send_is_counted_once_and_the_report_still_goes() -> None:
    api = FlakyApi()
    reporter = Reporter(api, "w1", None, nc=None, on_refused=lambda _: None)  # type: ignore[arg-type]
    runner = asyncio.create_task(reporter.run())
    try:
        reporter.report(Report(task_id="t-1", kind="succeeded", fencing=7, worker_id="w1"))
        await asyncio.wait_for(api.answered.wait(), 10)
    finally:
        runner.cancel()
    assert api.calls == 3 and reporter.resends == 2 and reporter.reports == []
