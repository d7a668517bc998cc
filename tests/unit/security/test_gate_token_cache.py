"""The gate checks a token's signature once, then re-checks at every use what the clock or
the log can change: expiry, revocation (of it or an ancestor), its signing key's retirement."""

from pathlib import Path

import pytest

from agents.auth import gate as gate_mod
from agents.auth.gate import Gate, Unauthenticated
from agents.auth.keyring import Keyring
from agents.auth.tokens import LEEWAY_S, issue
from dtf_core.events.auth import SigningKeyRetired, TokenRevoked
from projections.board import Board

NOW = 1_800_000_000.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Gate, Keyring, list[float]]:
    clock = [NOW]
    keyring = Keyring.create(tmp_path / "keys")
    return Gate(Board(), keyring=keyring, clock=lambda: clock[0]), keyring, clock


def test_a_token_used_again_is_not_verified_again(setup: tuple[Gate, Keyring, list[float]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gate, keyring, _ = setup
    token = issue(keyring, sub="ann", role="manager", ttl=600, now=NOW, jti="t1")
    checked: list[str] = []
    real = gate_mod.authentic
    monkeypatch.setattr(gate_mod, "authentic",
                        lambda tok, keys: checked.append(tok) or real(tok, keys))
    first = gate.principal(bearer(token))
    assert gate.principal(bearer(token)) == first and first.sub == "ann"
    assert checked == [token]


def test_a_revoked_token_is_refused_though_it_was_verified_before(
        setup: tuple[Gate, Keyring, list[float]]) -> None:
    gate, keyring, _ = setup
    token = issue(keyring, sub="ann", role="manager", ttl=600, now=NOW, jti="t2")
    gate.principal(bearer(token))
    gate.board.auth.apply(TokenRevoked(auth_id="t2", at=NOW, actor="admin"))
    with pytest.raises(Unauthenticated, match="revoked"):
        gate.principal(bearer(token))


def test_an_expired_token_is_refused_though_it_was_verified_before(
        setup: tuple[Gate, Keyring, list[float]]) -> None:
    gate, keyring, clock = setup
    token = issue(keyring, sub="ann", role="manager", ttl=60, now=NOW, jti="t3")
    gate.principal(bearer(token))
    clock[0] = NOW + 60 + LEEWAY_S + 1
    with pytest.raises(Unauthenticated, match="expired"):
        gate.principal(bearer(token))


def test_a_token_of_a_retired_key_is_refused_though_it_was_verified_before(
        setup: tuple[Gate, Keyring, list[float]]) -> None:
    gate, keyring, _ = setup
    token = issue(keyring, sub="ann", role="manager", ttl=600, now=NOW, jti="t4")
    gate.principal(bearer(token))
    gate.board.auth.apply(SigningKeyRetired(auth_id=keyring.current_kid, at=NOW,
                                            actor="admin"))
    with pytest.raises(Unauthenticated, match="retired"):
        gate.principal(bearer(token))


def test_a_tampered_token_is_refused_after_the_genuine_one_passed(
        setup: tuple[Gate, Keyring, list[float]]) -> None:
    gate, keyring, _ = setup
    token = issue(keyring, sub="ann", role="reader", ttl=600, now=NOW, jti="t5")
    gate.principal(bearer(token))
    head, _, sig = token.split(".")
    forged = issue(keyring, sub="ann", role="admin", ttl=600, now=NOW, jti="t5")
    with pytest.raises(Unauthenticated, match="bad signature"):
        gate.principal(bearer(f"{head}.{forged.split('.')[1]}.{sig}"))
    assert gate.principal(bearer(token)).role == "reader"


def test_the_cache_of_verified_tokens_is_bounded(setup: tuple[Gate, Keyring, list[float]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gate, keyring, _ = setup
    monkeypatch.setattr(gate_mod, "VERIFIED_TOKENS", 3)
    for i in range(10):
        gate.principal(bearer(issue(keyring, sub="ann", role="reader", ttl=600, now=NOW,
                                    jti=f"b{i}")))
        assert len(gate._verified) <= 3
