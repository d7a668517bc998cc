"""`dtf worker` connects with a worker credential only (issue 13): given an admin's or a
manager's token (say `DTF_TOKEN_FILE` left pointing at admin.jwt) it refuses to start."""

from __future__ import annotations

import jwt
import pytest

from agents.host.launch import check_worker_credential
from dtf_core.errors import InvalidInput


def token(role: str, wid: str | None = None) -> str:
    claims = {"sub": "x", "role": role, **({"wid": wid} if wid else {})}
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


@pytest.mark.parametrize("role", ["admin", "manager", "reader", "agent"])
def test_a_non_worker_token_is_refused(role: str) -> None:
    with pytest.raises(InvalidInput, match=f"needs a worker credential, .* role is '{role}'"):
        check_worker_credential(token(role), "w1")


def test_worker_credentials_pass_and_a_token_of_another_worker_does_not() -> None:
    check_worker_credential(None, "w1")  # a stack without auth
    check_worker_credential("dtfk_0123456789abcdef_secret", "w1")
    check_worker_credential(token("worker", "w1"), "w1")
    check_worker_credential(token("worker", "w1"), None)
    with pytest.raises(InvalidInput, match="for worker 'w2', not 'w1'"):
        check_worker_credential(token("worker", "w2"), "w1")
    with pytest.raises(InvalidInput, match="neither a worker key"):
        check_worker_credential("garbage", "w1")
