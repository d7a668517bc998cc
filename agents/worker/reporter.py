"""A worker's reports to the api: attempt verdicts and per-test results, batched, signed,
resent with backoff until the api answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
import nats.errors
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client

from agents.auth.signing import canonical_bytes, mac, sign
from agents.wire.client import ApiClient
from agents.worker.pytest.outbox import Outbox
from dtf_core import commands as cmds
from dtf_core.errors import DTFError
from dtf_core.events.tests import TestCase
from dtf_core.task import Report

log = logging.getLogger(__name__)
# A report batch sent to an api that dies with it gets no answer: resend it soon (a resend
# of applied reports changes nothing) rather than after the default 10 s, so a failover of
# the control plane does not stall every worker's results, and the slots they hold on the
# new leader's board, for that long. The wait doubles after each miss (a loaded api).
REPORT_TIMEOUT_S = 0.5
REPORT_MAX_TIMEOUT_S = 4.0
MAX_REPORTS = 1000
TESTS_LINGER_S = 0.1
TESTS_BATCH_BYTES = 256 * 1024


class Reporter:
    """``on_refused``: called with each report the api refused (a lease no longer ours)."""

    def __init__(self, api: ApiClient, worker_id: str, signing_key: Ed25519PrivateKey | None,
                 nc: Client, on_refused: Callable[[cmds.ReportOutcome], None]) -> None:
        self.api = api
        self.nc = nc
        self.signing_key = signing_key
        # the session's report key, from the api's answer to the registration (None: the
        # api has none, --insecure-dev, and batches are signed with ``signing_key``)
        self.report_key: bytes | None = None
        self.on_refused = on_refused
        self.reports: list[Report] = []
        self.outbox = Outbox(worker_id)  # per-test results waiting to be reported
        self.resends = 0  # batches sent again (no answer, or the api unavailable)
        self._ready = asyncio.Event()
        self._send_now = asyncio.Event()

    def report(self, report: Report) -> None:
        """An attempt's verdict: it goes at once."""
        self.reports.append(report)
        self._ready.set()
        self._send_now.set()

    def add_case(self, key: tuple[str, int, int], case: TestCase, log_subject: str) -> None:
        """A test's result; `dtf logs -f` shows tests as they finish, a batch per round."""
        self.outbox.add(key, case, log_subject)
        self._ready.set()
        if self.outbox.size >= TESTS_BATCH_BYTES:
            self._send_now.set()

    async def flush_lines(self) -> None:
        for subject, chunk in self.outbox.take_lines().items():
            try:
                await self.nc.publish(subject, "".join(chunk).encode(),
                                      headers={"Dtf-Stream": "stdout"})
            except nats.errors.Error as exc:
                log.warning("%d output lines of %s lost: %r", len(chunk), subject, exc)

    async def _linger(self) -> None:
        """Per-test results wait up to TESTS_LINGER_S for more, as a producer lingers to
        batch: a fast suite's results go in a few large appends instead of thousands of
        small ones (each a round trip, an fsync and a wake-up of every follower). A task's
        own report, or a full batch, goes at once."""
        if self.reports or self.outbox.size >= TESTS_BATCH_BYTES:
            return
        self._send_now.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TESTS_LINGER_S):
                await self._send_now.wait()

    async def run(self) -> None:
        backoff = 0.05
        timeout = REPORT_TIMEOUT_S
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.reports or self.outbox:
                await self._linger()
                await self.flush_lines()
                tests = self.outbox.take()
                # Reports go after every test of their attempt: hold them while a test batch
                # is still waiting for the next round.
                batch = [] if len(tests) < len(self.outbox.batches) else \
                    self.reports[:MAX_REPORTS]
                try:
                    refused = await self.api.report(self.signed(batch, tests), timeout=timeout)
                except DTFError as exc:
                    log.warning("reporting %d results failed (%s); retrying", len(batch), exc)
                    self.resends += 1
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    timeout = min(timeout * 2, REPORT_MAX_TIMEOUT_S)
                    continue
                backoff = 0.05
                timeout = REPORT_TIMEOUT_S
                del self.reports[: len(batch)]
                self.outbox.sent(len(tests))
                for item in refused:
                    self.on_refused(item)

    async def send_held(self) -> None:
        """At a stop: the verdicts not sent yet, in one call."""
        if self.reports:
            await self.api.report(self.signed(list(self.reports)))
            self.reports.clear()

    def signed(self, reports: list[Report],
               tests: list[cmds.TestBatch] | None = None) -> cmds.ReportResults:
        cmd = cmds.ReportResults(reports=reports, tests=tests or [])
        if self.report_key is not None:  # the session's tag: ADR 0020
            return msgspec.structs.replace(
                cmd, mac=mac(self.report_key, canonical_bytes(cmd.signed_part())))
        if self.signing_key is None:
            return cmd
        return msgspec.structs.replace(
            cmd, signature=sign(self.signing_key, canonical_bytes(cmd.signed_part())))
