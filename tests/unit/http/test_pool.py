"""The HTTP agent's connections per credential: a refused credential is remembered, and
an address that keeps presenting bad ones waits (429) before any login is tried."""

from __future__ import annotations

import pytest

from agents.auth.errors import Unauthenticated
from agents.http.errors import TooManyFailures
from agents.http.pool import ClientPool
from agents.nats.connect import CredentialRefused
from agents.wire.client import ApiClient

pytestmark = pytest.mark.anyio


class Refusing(ClientPool):
    """The server's side of a login, as the callout answers a bad token: refused."""

    def __init__(self) -> None:
        super().__init__("nats://127.0.0.1:1", None)
        self.logins = 0

    async def _open(self, credential: str | None) -> ApiClient:
        self.logins += 1
        raise CredentialRefused("refused the credential: authorization violation")


async def test_a_refused_credential_is_remembered_and_a_flood_waits() -> None:
    pool = Refusing()
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await pool.client("same-bad-token", "10.0.0.1")
    assert pool.logins == 1  # remembered: not tried again at the server (each still counts)
    for i in range(7):
        with pytest.raises(Unauthenticated):
            await pool.client(f"bad-{i}", "10.0.0.1")
    with pytest.raises(TooManyFailures):
        await pool.client("another", "10.0.0.1")
    assert pool.logins == 8  # ten failures: the blocked address's login is not even tried
    with pytest.raises(Unauthenticated):  # another address is not held up by it
        await pool.client("another", "10.0.0.2")
