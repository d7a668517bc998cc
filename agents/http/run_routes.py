"""The REST API's handlers for runs and their tests: the runs, a run's test results, its
cancel, and the tests that both passed and failed (from the projector)."""

from __future__ import annotations

import time

import msgspec
import nats.errors
from starlette.requests import Request
from starlette.responses import Response

from agents.http.routes import Handlers, as_json, limit_of, page, path_id
from agents.wire.output import Position, run_tests
from agents.wire.projector import flaky_tests, refusal, trends
from dtf_core.errors import InvalidInput, NotFound, Unavailable
from dtf_core.ids import validate_id
from projections.trends import TrendQuery


class RunRoutes(Handlers):
    """Runs and their tests."""

    async def runs(self, request: Request) -> Response:
        """Runs, newest first, each with its tasks' count by status."""
        limit = limit_of(request)
        cursor = request.query_params.get("cursor")
        rows = await (await self.client(request)).runs(
            limit=limit + 1, before=validate_id(cursor, "cursor") if cursor else None)
        more = len(rows) > limit
        rows = rows[:limit]
        return page(rows, rows[-1].id if more else None)

    async def run_tests(self, request: Request) -> Response:
        """A run's test results (``outcome`` filters), in the order they were reported."""
        run_id = path_id(request, "run_id", "run id")
        after = parse_position(request.query_params.get("cursor"))
        api = await self.client(request)
        if not await api.tasks(run_id=run_id, limit=1):
            raise NotFound(f"unknown run {run_id} (or it has no task)")
        rows, last = await run_tests(api, run_id, limit=limit_of(request), after=after,
                                     outcome=request.query_params.get("outcome"))
        return page(rows, None if last is None else f"{last[0]}.{last[1]}")

    async def flaky(self, request: Request) -> Response:
        """Tests that both passed and failed in the last ``days`` (default 7), with the
        workers they failed on; from the projector."""
        raw = request.query_params.get("days", "7")
        try:
            days = float(raw)
        except ValueError:
            days = -1.0
        if not 0 < days <= 366:
            raise InvalidInput("days must be a number from 0 to 366")
        api = await self.client(request)
        await api.status()  # may the caller read at all (the projector does not check)
        try:
            answer = await flaky_tests(api.nc, time.time() - days * 86400, limit_of(request))
        except nats.errors.Error as exc:
            raise Unavailable(f"no projector answered: {exc!r}") from None
        if not answer.ok:
            raise Unavailable(f"the projector could not answer: {answer.error}")
        return page(answer.result or [], None)

    async def trends(self, request: Request) -> Response:
        """The benchmark series with their change points and forecasts, runs compared
        (``baseline``/``candidate``, repeated) and flaky tests by hardware: what `dtf
        trends` shows, from the projector. Filters as `dtf results query`'s."""
        params = request.query_params
        try:
            query = msgspec.convert({
                "filters": {k: params[k] for k in ("model", "hardware", "precision",
                                                   "workload", "commit") if k in params},
                "metric": params.get("metric", "wall_s"),
                "baseline": params.getlist("baseline"), "candidate": params.getlist("candidate"),
                "max_series": limit_of(request), "max_points": 200}, TrendQuery)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid query: {exc}") from None
        api = await self.client(request)
        await api.status()  # may the caller read at all (the projector does not check)
        try:
            answer = await trends(api.nc, query, timeout=30)
        except nats.errors.Error as exc:
            raise Unavailable(f"no projector answered: {exc!r}") from None
        if not answer.ok:
            raise refusal(answer.error, answer.retryable)
        return as_json(answer)

    async def cancel_run(self, request: Request) -> Response:
        """Cancel every task of the run that has not ended."""
        run_id = path_id(request, "run_id", "run id")
        api = await self.client(request)
        if not await api.tasks(run_id=run_id, limit=1):
            raise NotFound(f"unknown run {run_id} (or it has no task)")
        cancelled = await api.cancel_run(run_id, "run cancelled over HTTP")
        return as_json({"run_id": run_id, "cancelled": cancelled})


def parse_position(cursor: str | None) -> Position:
    """A test-results cursor, ``SEQ.INDEX`` (the ``next`` of the page before)."""
    if not cursor:
        return (0, 0)
    seq, _, index = cursor.partition(".")
    if not (seq.isdigit() and index.isdigit()):
        raise InvalidInput(f"invalid cursor {cursor!r}: pass the 'next' of the previous page")
    return int(seq), int(index)
