"""Who is asking: a bearer header (programs) or the session cookie (the browser), and the
guards a cookie needs: state-changing requests must be same-origin and carry the header
that only the dashboard's own scripts send (a form on another site cannot)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from agents.auth.errors import Forbidden, Unauthenticated

COOKIE = "dtf_session"
CSRF_HEADER = "x-dtf-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TTL_S = 8 * 3600.0


def credential(request: Request, *, secure: bool) -> str | None:
    """The caller's credential; None only on a stack without auth."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("unauthenticated: send 'Authorization: Bearer <token>'")
        return value.strip()
    cookie = request.cookies.get(COOKIE)
    if cookie:
        if request.method not in SAFE_METHODS:
            check_same_origin(request)
        return cookie
    if not secure:
        return None
    raise Unauthenticated("unauthenticated: send 'Authorization: Bearer <token>', or log in "
                          "through the link `dtf dashboard` prints")


def check_same_origin(request: Request) -> None:
    """A cookie-authenticated change must come from the dashboard itself."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"forbidden: a change made with the session cookie needs the "
                        f"{CSRF_HEADER} header")
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        raise Forbidden("forbidden: cross-site request")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise Forbidden(f"forbidden: request from origin {origin!r}, not {own!r}")


def set_session(response: Response, token: str, *, https: bool) -> None:
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL_S), path="/", httponly=True,
                        samesite="strict", secure=https)


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def source(request: Request) -> str:
    return request.client.host if request.client else ""
