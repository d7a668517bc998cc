"""The dashboard's page and files: the login page for a visitor without a session, the
dashboard for one with; strict headers (no inline scripts, no framing, no referrer)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from agents.http import access
from agents.http.errors import error_body

STATIC = Path(__file__).with_name("static")
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def index(request: Request) -> Response:
    page = "dashboard.html" if request.cookies.get(access.COOKIE) else "login.html"
    return FileResponse(STATIC / page, media_type="text/html", headers=HEADERS)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in FILES:  # a fixed set: no path from the request reaches the disk
        return error_body(404, "not_found", f"no such file: {name}")
    return FileResponse(STATIC / name, media_type=FILES[name], headers=HEADERS)
