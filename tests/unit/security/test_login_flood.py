"""A flood of made-up credentials from one address: after a few failures its API keys are
neither checked (no scrypt) nor answered, while a valid token from there still passes."""

import time
from pathlib import Path

import pytest

from agents.auth.gate import Gate
from agents.auth.keyring import Keyring
from agents.auth.natsauth import nkeys
from agents.auth.natsauth.callout import HOLD
from agents.auth.natsauth.permissions import Permissions
from agents.auth.server_auth import FailedLogins, make_callout
from agents.auth.tokens import issue, new_token_id
from projections.board import Board

pytestmark = pytest.mark.anyio
FAKE = "dtfk_0123456789abcdef_" + "x" * 43


def test_failed_logins_block_a_source_for_the_window() -> None:
    now = [100.0]
    limiter = FailedLogins(limit=3, window=10.0, clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == 0.0
    limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == 10.0 and limiter.blocked("10.0.0.2") == 0.0
    now[0] += 10.5
    assert limiter.blocked("10.0.0.1") == 0.0


async def test_a_flooding_source_is_held_but_valid_tokens_pass(tmp_path: Path) -> None:
    keyring = Keyring.create(tmp_path / "keys")
    callout = make_callout(Gate(Board(), keyring=keyring),
                           nkeys.KeyPair.create(nkeys.PREFIX_ACCOUNT))
    info = {"host": "10.0.0.9"}
    verdicts = [await callout.authorize(FAKE, info) for _ in range(12)]
    assert all(isinstance(v, str) and "api key rejected" in v for v in verdicts[:10])
    assert verdicts[10:] == [HOLD, HOLD]  # no check, no answer
    assert await callout.authorize("garbage", info) is HOLD
    token = issue(keyring, sub="ann", role="reader", ttl=60, now=time.time(),
                  jti=new_token_id())
    assert isinstance(await callout.authorize(token, info), Permissions)
    other = await callout.authorize(FAKE, {"host": "10.0.0.8"})
    assert isinstance(other, str) and other is not HOLD
