"""The HTTP agent: a Starlette app served by uvicorn on a socket bound before it starts
(a port in use is a clear error, not a crash inside the server)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn
from nats.aio.client import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from agents.http import openapi, pages
from agents.http.errors import error_body
from agents.http.live import Feed
from agents.http.metrics import CONTENT_TYPE
from agents.http.pool import ClientPool
from agents.http.routes import Routes
from agents.http.run_routes import RunRoutes
from agents.http.sessions import Sessions
from agents.http.sockets import Sockets
from dtf_core.errors import InvalidInput

log = logging.getLogger(__name__)


def build_app(pool: ClientPool, *, secure: bool, own: Client | None = None,
              feed: Feed | None = None) -> Starlette:
    """``own``: the agent's own connection, which ``/health`` reports on; ``feed``: the
    live events the WebSockets serve (none: no WebSocket endpoints)."""
    routes = Routes(pool, secure=secure)
    runs = RunRoutes(pool, secure=secure)
    sessions = Sessions(pool, secure=secure)
    e = routes.endpoint
    spec = openapi.document()

    async def health(request: Request) -> Response:
        connected = own is None or own.is_connected
        return JSONResponse({"status": "ok" if connected else "unavailable",
                             "nats": "connected" if connected else "disconnected"},
                            status_code=200 if connected else 503)

    async def metrics(request: Request) -> Response:
        """Prometheus' text format; a reader's credential (bearer) may scrape."""
        if feed is None or feed.metrics is None:
            return error_body(404, "not_found", "no metrics here")
        api = await routes.client(request)
        return Response(await feed.metrics.scrape(api, feed.last_seq),
                        media_type=CONTENT_TYPE)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_body(404, "not_found", f"no such path: {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_body(405, "method_not_allowed",
                          f"{request.method} is not allowed on {request.url.path}")

    table: list[tuple[str, Callable[[Request], object], list[str]]] = [
        ("/", pages.index, ["GET"]),
        ("/static/{name}", pages.static, ["GET"]),
        ("/api/me", e(sessions.me), ["GET"]),
        ("/health", health, ["GET"]),
        ("/metrics", e(metrics), ["GET"]),
        ("/openapi.json", openapi_json, ["GET"]),
        ("/login", e(sessions.login), ["GET"]),
        ("/logout", e(sessions.logout), ["POST"]),
        ("/api/status", e(routes.status), ["GET"]),
        ("/api/dashboard", e(routes.dashboard), ["GET"]),
        ("/api/workers", e(routes.workers), ["GET"]),
        ("/api/workers/{worker_id}", e(routes.worker), ["GET"]),
        ("/api/workers/{worker_id}/{action}", e(routes.manage_worker), ["POST"]),
        ("/api/tasks", e(routes.tasks), ["GET"]),
        ("/api/tasks", e(routes.submit), ["POST"]),
        ("/api/tasks/{task_id}", e(routes.task), ["GET"]),
        ("/api/tasks/{task_id}", e(routes.cancel), ["DELETE"]),
        ("/api/tasks/{task_id}/events", e(routes.task_events), ["GET"]),
        ("/api/tasks/{task_id}/explain", e(routes.explain), ["GET"]),
        ("/api/tasks/{task_id}/logs", e(routes.output), ["GET"]),
        ("/api/runs", e(runs.runs), ["GET"]),
        ("/api/runs/{run_id}/tasks", e(routes.run_tasks), ["GET"]),
        ("/api/runs/{run_id}/tests", e(runs.run_tests), ["GET"]),
        ("/api/tests/flaky", e(runs.flaky), ["GET"]),
        ("/api/trends", e(runs.trends), ["GET"]),
        ("/api/runs/{run_id}/cancel", e(runs.cancel_run), ["POST"]),
    ]
    served: list[BaseRoute] = [Route(path, fn, methods=methods) for path, fn, methods in table]
    if feed is not None:
        sockets = Sockets(pool, feed, secure=secure)
        served += [WebSocketRoute("/ws", sockets.events),
                   WebSocketRoute("/ws/dashboard", sockets.dashboard)]
    return Starlette(
        routes=served,
        exception_handlers={404: not_found, 405: not_allowed},
    )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said explicitly: asyncio turns Nagle off only on sockets that say so,
    # and with it on, every answer on a kept-alive connection waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port} ({exc.strerror}): pass "
                           "--http-port N (or --no-http to `dtf up`)") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve until cancelled; uvicorn's own signal handling stays off (the agent's
    ``run_until_signal`` owns the signals)."""
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                            ws="websockets-sansio")
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        await server.main_loop()
    finally:
        server.should_exit = True
        await asyncio.shield(server.shutdown(sockets=[sock]))
