"""Who is asking: a bearer header (programs) or the session cookie (the browser), and the
guards a cookie needs: state-changing requests must be same-origin and carry the header
that only the dashboard's own scripts send (a form on another site cannot)."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from agents.auth.errors import Forbidden, Unauthenticated

COOKIE = "dtf_session"
CSRF_HEADER = "x-dtf-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TTL_S = 8 * 3600.0


def credential(conn: HTTPConnection, *, secure: bool) -> str | None:
    """The caller's credential, for a request or a WebSocket; None only on a stack
    without auth. A cookie must come from the page's own origin for a WebSocket (which
    no browser policy guards) and for any change."""
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("unauthenticated: send 'Authorization: Bearer <token>'")
        return value.strip()
    cookie = conn.cookies.get(COOKIE)
    if cookie:
        if conn.scope["type"] == "websocket":
            check_origin(conn)
        elif conn.scope.get("method") not in SAFE_METHODS:
            check_same_origin(conn)
        return cookie
    if not secure:
        return None
    raise Unauthenticated("unauthenticated: send 'Authorization: Bearer <token>', or log in "
                          "through the link `dtf dashboard` prints")


def check_same_origin(conn: HTTPConnection) -> None:
    """A cookie-authenticated change must come from the dashboard itself."""
    if conn.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"forbidden: a change made with the session cookie needs the "
                        f"{CSRF_HEADER} header")
    if conn.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        raise Forbidden("forbidden: cross-site request")
    check_origin(conn)


def check_origin(conn: HTTPConnection) -> None:
    origin = conn.headers.get("origin")
    netloc = conn.url.netloc
    if origin is not None and origin not in (f"http://{netloc}", f"https://{netloc}"):
        raise Forbidden(f"forbidden: a request from origin {origin!r}")


def set_session(response: Response, token: str, *, https: bool) -> None:
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL_S), path="/", httponly=True,
                        samesite="strict", secure=https)


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def source(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""
