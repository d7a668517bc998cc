"""Each of DTF's errors has its HTTP status and code (the REST API's error table)."""

from __future__ import annotations

import json

from agents.auth.errors import Forbidden, Unauthenticated
from agents.http.errors import TooManyFailures, error_response
from agents.log.port import AppendConflict
from dtf_core.errors import Conflict, DTFError, InvalidInput, NotFound, Refused, Unavailable


def test_every_error_kind_has_its_status_and_code() -> None:
    cases = [(InvalidInput("x"), 400, "invalid"), (Unauthenticated("x"), 401, "unauthenticated"),
             (Forbidden("x"), 403, "forbidden"), (NotFound("x"), 404, "not_found"),
             (Conflict("x"), 409, "conflict"), (AppendConflict("x"), 409, "conflict"),
             (Refused("x"), 409, "refused"), (TooManyFailures("x"), 429, "too_many_failures"),
             (Unavailable("x"), 503, "unavailable"), (DTFError("x"), 500, "error")]
    for exc, status, code in cases:
        answer = error_response(exc)
        assert answer.status_code == status, exc
        assert json.loads(bytes(answer.body)) == {"error": {"code": code, "message": "x"}}
    assert error_response(Unauthenticated("x")).headers["www-authenticate"] == 'Bearer realm="dtf"'
