"""DTF's errors as HTTP answers: JSON with a code and a message, and one status per kind."""

from __future__ import annotations

from starlette.responses import JSONResponse

from agents.auth.errors import Forbidden, Unauthenticated
from dtf_core.errors import Conflict, DTFError, InvalidInput, NotFound, Refused, Unavailable


class TooManyFailures(DTFError):
    """A source that keeps presenting bad credentials waits."""


# The most specific class first: the first match wins.
STATUSES: tuple[tuple[type[DTFError], int, str], ...] = (
    (InvalidInput, 400, "invalid"),
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (Refused, 409, "refused"),
    (TooManyFailures, 429, "too_many_failures"),
    (Unavailable, 503, "unavailable"),
)


def error_body(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="dtf"'} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def error_response(exc: DTFError) -> JSONResponse:
    for kind, status, code in STATUSES:
        if isinstance(exc, kind):
            return error_body(status, code, str(exc))
    return error_body(500, "error", str(exc))
