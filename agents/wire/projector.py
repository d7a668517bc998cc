"""Asking the projector (JSON over request/reply): its position and tables, tests'
measured durations, and flaky tests. Each answer is decoded once, here, into its type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import msgspec
from nats.aio.client import Client

from dtf_core import subjects
from dtf_core.errors import DTFError, InvalidInput, Unavailable

if TYPE_CHECKING:
    from projections.trends import TrendQuery, TrendReport

from dtf_core.replies import Durations, FlakyTests, ProjectorStatus, ResultsQuery, ResultsTable


async def projector_status(nc: Client, op: Literal["status", "hash"] = "status",
                           timeout: float = 2.0) -> ProjectorStatus:
    """Raises nats' errors when no projector answers, msgspec's for a malformed answer."""
    msg = await nc.request(subjects.Q_PROJECTOR, msgspec.json.encode({"op": op}),
                           timeout=timeout)
    return msgspec.json.decode(msg.data, type=ProjectorStatus)


async def measured_durations(nc: Client, node_ids: Sequence[str],
                         headers: dict[str, str] | None = None,
                         timeout: float = 10.0) -> Durations:
    msg = await nc.request(subjects.Q_TEST_DURATIONS,
                           msgspec.json.encode({"node_ids": list(node_ids)}),
                           timeout=timeout, headers=headers)
    return msgspec.json.decode(msg.data, type=Durations)


async def flaky_tests(nc: Client, since: float, limit: int = 100,
                      timeout: float = 10.0) -> FlakyTests:
    """Tests that both passed and failed since ``since`` (Unix time), from the projector."""
    msg = await nc.request(subjects.Q_FLAKY_TESTS,
                           msgspec.json.encode({"since": since, "limit": limit}),
                           timeout=timeout)
    return msgspec.json.decode(msg.data, type=FlakyTests)


async def results(nc: Client, query: ResultsQuery, timeout: float = 60.0) -> ResultsTable:
    """Benchmark results, or a read-only SELECT's rows, from the running projector."""
    msg = await nc.request(subjects.Q_RESULTS, msgspec.json.encode(query), timeout=timeout)
    return msgspec.json.decode(msg.data, type=ResultsTable)


async def trends(nc: Client, query: TrendQuery, timeout: float = 120.0) -> TrendReport:
    """The projector's analysis of the benchmark history (projections/trends.py)."""
    from projections.trends import TrendReport  # numpy and scipy: only when asked

    msg = await nc.request(subjects.Q_TRENDS, msgspec.json.encode(query), timeout=timeout)
    return msgspec.json.decode(msg.data, type=TrendReport)


def refusal(error: object, retryable: bool) -> DTFError:
    """A projector's refusal as the error to raise: Unavailable when asking again later
    may work (the projection catching up with the log), InvalidInput otherwise."""
    return (Unavailable if retryable else InvalidInput)(str(error))
