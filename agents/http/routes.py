"""The REST API's handlers. Each one sends the command or query the CLI would send, under
the caller's credential, and answers JSON: a struct as the CLI's ``--json`` shows it, a
page ``{"items": [...], "next": cursor}``, or an error ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
from starlette.requests import Request
from starlette.responses import Response

from agents.http import access, live
from agents.http.errors import error_response
from agents.http.pool import ClientPool
from agents.wire.client import ApiClient
from agents.wire.output import task_output
from dtf_core.commands import ManageAction
from dtf_core.errors import DTFError, InvalidInput, NotFound, Unavailable
from dtf_core.ids import validate_id
from dtf_core.replies import TaskSummary
from dtf_core.spec import TaskSpec, parse_specs

log = logging.getLogger(__name__)

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_BODY = 8 * 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


class SubmitBody(msgspec.Struct, forbid_unknown_fields=True):
    tasks: list[TaskSpec]
    run_name: str = ""


class ManageBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


def as_json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status,
                    media_type="application/json")


def page(items: list[Any], next_cursor: str | None) -> Response:
    return as_json({"items": items, "next": next_cursor})


def limit_of(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def path_id(request: Request, name: str, what: str) -> str:
    return validate_id(request.path_params[name], what)


class Handlers:
    """What every group of handlers shares: the pool, and the caller's api client."""

    def __init__(self, pool: ClientPool, *, secure: bool) -> None:
        self.pool = pool
        self.secure = secure

    async def client(self, request: Request) -> ApiClient:
        cred = access.credential(request, secure=self.secure)
        return await self.pool.client(cred, access.source(request))

    def endpoint(self, handler: Handler) -> Handler:
        """DTF's errors as JSON answers with their status; nothing else is caught."""
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except DTFError as exc:
                return error_response(exc)
            except nats.errors.Error as exc:  # the caller's connection closed meanwhile
                log.info("%s %s: %r", request.method, request.url.path, exc)
                return error_response(Unavailable(f"the connection to NATS closed: {exc!r}"))
        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        return run


class Routes(Handlers):
    """Status, workers and tasks."""

    async def status(self, request: Request) -> Response:
        return as_json(await (await self.client(request)).status())

    async def dashboard(self, request: Request) -> Response:
        """The counts the dashboard's header shows, aggregated here."""
        return as_json(await live.dashboard(await self.client(request)))

    async def workers(self, request: Request) -> Response:
        q = request.query_params
        rows = await (await self.client(request)).workers()
        rows = [w for w in sorted(rows, key=lambda w: w.id)
                if (q.get("state") in (None, w.state))
                and (q.get("scheduling") in (None, w.scheduling))
                and (q.get("after") is None or w.id > q["after"])]
        limit = limit_of(request)
        more = len(rows) > limit
        rows = rows[:limit]
        return page(rows, rows[-1].id if more else None)

    async def worker(self, request: Request) -> Response:
        worker_id = path_id(request, "worker_id", "worker id")
        found = [w for w in await (await self.client(request)).workers() if w.id == worker_id]
        if not found:
            raise NotFound(f"unknown worker {worker_id}")
        return as_json(found[0])

    async def manage_worker(self, request: Request) -> Response:
        worker_id = path_id(request, "worker_id", "worker id")
        action = request.path_params["action"]
        if action not in ("cordon", "drain", "uncordon"):
            raise NotFound(f"no action {action!r}: cordon, drain or uncordon")
        body = await decode_body(request, ManageBody, empty=ManageBody())
        manage: ManageAction = action
        return as_json(await (await self.client(request)).manage_worker(
            worker_id, manage, body.reason))

    async def tasks(self, request: Request) -> Response:
        q = request.query_params
        run_id = validate_id(q["run_id"], "run id") if "run_id" in q else None
        return await self._task_page(request, q.get("status"), run_id)

    async def run_tasks(self, request: Request) -> Response:
        run_id = path_id(request, "run_id", "run id")
        return await self._task_page(request, request.query_params.get("status"), run_id)

    async def _task_page(self, request: Request, status: str | None,
                         run_id: str | None) -> Response:
        limit = limit_of(request)
        before_seq, after_compacted = parse_cursor(request.query_params.get("cursor"))
        rows = await (await self.client(request)).tasks(
            status=status, run_id=run_id, limit=limit + 1, before_seq=before_seq,
            after_compacted=after_compacted)
        more = len(rows) > limit
        rows = rows[:limit]
        return page(rows, task_cursor(rows[-1]) if more else None)

    async def task(self, request: Request) -> Response:
        task_id = path_id(request, "task_id", "task id")
        return as_json(await (await self.client(request)).task(task_id))

    async def task_events(self, request: Request) -> Response:
        task_id = path_id(request, "task_id", "task id")
        return page((await (await self.client(request)).task(task_id)).history, None)

    async def explain(self, request: Request) -> Response:
        task_id = path_id(request, "task_id", "task id")
        return as_json(await (await self.client(request)).explain(task_id))

    async def submit(self, request: Request) -> Response:
        """One task spec, a list of them, or ``{"tasks": [...], "run_name": "..."}``."""
        body = await read_body(request)
        parsed = decode_as(body, object)
        if isinstance(parsed, dict) and "tasks" in parsed:  # a batch, not a spec
            try:
                batch = msgspec.convert(parsed, SubmitBody)
            except msgspec.ValidationError as exc:
                raise InvalidInput(f"invalid body: {exc}") from None
            specs, run_name = batch.tasks, batch.run_name
        else:
            specs, run_name = parse_specs(body), ""
        if not specs:
            raise InvalidInput("nothing to submit: the body holds no task")
        # as the CLI: several tasks, or a named batch, make a run
        run_id = f"r-{uuid.uuid4().hex[:16]}" if len(specs) > 1 or run_name else None
        result = await (await self.client(request)).submit(specs, run_id=run_id,
                                                           run_name=run_name)
        return as_json(result, status=201)

    async def output(self, request: Request) -> Response:
        """What the task printed (stdout and stderr, in order), up to 2 MiB."""
        task_id = path_id(request, "task_id", "task id")
        return as_json(await task_output(await self.client(request), task_id))

    async def cancel(self, request: Request) -> Response:
        task_id = path_id(request, "task_id", "task id")
        return as_json(await (await self.client(request)).cancel(task_id, "cancelled over HTTP"))

async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidInput(f"the body is over {MAX_BODY // (1024 * 1024)} MiB")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InvalidInput(f"the body is over {MAX_BODY // (1024 * 1024)} MiB")
    return body


def decode_as(body: bytes, into: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=into)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"invalid body: {exc}") from None


async def decode_body(request: Request, into: type[T], *, empty: T) -> T:
    body = await read_body(request)
    return decode_as(body, into) if body.strip() else empty


def parse_cursor(cursor: str | None) -> tuple[int | None, str | None]:
    """``s<seq>``: live tasks changed before that sequence; ``c<task id>``: compacted tasks
    after that one."""
    if not cursor:
        return None, None
    kind, rest = cursor[0], cursor[1:]
    if kind == "s" and rest.isdigit():
        return int(rest), None
    if kind == "c":
        return None, validate_id(rest, "cursor")
    raise InvalidInput(f"invalid cursor {cursor!r}: pass the 'next' of the previous page")


def task_cursor(row: TaskSummary) -> str:
    return f"s{row.last_seq}" if row.last_seq is not None else f"c{row.id}"

