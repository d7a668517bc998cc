"""Issuing, verifying, rotating and refreshing tokens: the paths that must succeed."""

from __future__ import annotations

import jwt
import pytest

from agents.auth.errors import Unauthenticated
from agents.auth.jws import b64url_decode
from agents.auth.keyring import Keyring, PublicKeys
from agents.auth.roles import Role
from agents.auth.tokens import AUDIENCE, ISSUER, LEEWAY_S, issue, new_token_id, refresh, verify
from dtf_core.errors import InvalidInput
from tests.unit.security.crafting import NOW, TTL


def test_roundtrip(keyring: Keyring, token: str) -> None:
    claims = verify(token, keyring, now=NOW + 1)
    assert (claims.sub, claims.role, claims.jti, claims.wid) == ("alice", Role.MANAGER, "j1", None)
    assert (claims.iss, claims.aud) == (ISSUER, AUDIENCE)
    assert (claims.iat, claims.nbf, claims.exp) == (int(NOW), int(NOW), int(NOW + TTL))


def test_header_is_explicit(token: str) -> None:
    header = b64url_decode(token.split(".")[0], "header")
    assert header.startswith(b'{"alg":"EdDSA","typ":"dtf+jwt","kid":"')


def test_worker_token_carries_its_worker_id(keyring: Keyring) -> None:
    token = issue(keyring, sub="w1", role=Role.WORKER, ttl=TTL, now=NOW, jti="j2", wid="w1")
    assert verify(token, keyring, now=NOW).wid == "w1"


def test_a_standard_jwt_library_accepts_our_tokens(keyring: Keyring, token: str) -> None:
    public = keyring.signing_key()[1].public_key()
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
                        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert claims["sub"] == "alice"
    assert jwt.get_unverified_header(token)["typ"] == "dtf+jwt"


def test_leeway_accepts_small_clock_skew(keyring: Keyring, token: str) -> None:
    verify(token, keyring, now=NOW - LEEWAY_S + 1)
    verify(token, keyring, now=NOW + TTL + LEEWAY_S - 1)
    with pytest.raises(Unauthenticated, match="expired"):
        verify(token, keyring, now=NOW + TTL + LEEWAY_S)
    with pytest.raises(Unauthenticated, match="not valid before"):
        verify(token, keyring, now=NOW - LEEWAY_S - 1)


def test_issuer_and_audience_are_exact(keyring: Keyring) -> None:
    token = issue(keyring, sub="a", role="reader", ttl=TTL, now=NOW, jti="j", issuer="dtf:c1",
                  audience="dtf-api:c1")
    verify(token, keyring, now=NOW, issuer="dtf:c1", audience="dtf-api:c1")
    with pytest.raises(Unauthenticated, match="issuer"):
        verify(token, keyring, now=NOW)


def test_bytes_tokens_are_accepted(keyring: Keyring, token: str) -> None:
    assert verify(token.encode(), keyring, now=NOW).jti == "j1"


def test_not_revoked_passes(keyring: Keyring, token: str) -> None:
    verify(token, keyring, now=NOW, revoked={"other"})
    verify(token, keyring, now=NOW, revoked=lambda jti: False)


def test_rotation_keeps_old_tokens_valid_until_retired(keyring: Keyring, token: str) -> None:
    old_kid = keyring.current_kid
    new_kid = keyring.rotate()
    assert new_kid != old_kid and keyring.current_kid == new_kid
    newer = issue(keyring, sub="bob", role="reader", ttl=TTL, now=NOW, jti="j9")
    reloaded = Keyring.load(keyring.path.parent)
    for keys in (keyring, reloaded, reloaded.public_keys()):
        assert verify(token, keys, now=NOW).sub == "alice"
        assert verify(newer, keys, now=NOW).sub == "bob"
    keyring.retire(old_kid)
    with pytest.raises(Unauthenticated, match="retired"):
        verify(token, keyring, now=NOW)
    assert verify(newer, Keyring.load(keyring.path.parent), now=NOW).sub == "bob"


def test_verifying_with_exported_public_keys_only(keyring: Keyring, token: str) -> None:
    exported = keyring.public_keys().to_json()
    assert verify(token, PublicKeys.from_json(exported), now=NOW).sub == "alice"


def test_refresh_issues_a_new_token_with_the_same_principal(keyring: Keyring) -> None:
    old = issue(keyring, sub="w1", role="worker", ttl=TTL, now=NOW, jti="j1", wid="w1")
    later = NOW + TTL - 10
    new = refresh(old, keyring, now=later, ttl=TTL, new_jti="j2")
    claims = verify(new, keyring, now=later)
    assert (claims.sub, claims.role, claims.wid, claims.jti) == ("w1", Role.WORKER, "w1", "j2")
    assert claims.exp == int(later + TTL)


def test_refresh_uses_the_current_key_after_rotation(keyring: Keyring, token: str) -> None:
    new_kid = keyring.rotate()
    new = refresh(token, keyring, now=NOW, ttl=TTL, new_jti="j2")
    assert jwt.get_unverified_header(new)["kid"] == new_kid


@pytest.mark.parametrize(("now", "revoked", "match"), [
    (NOW + TTL + LEEWAY_S, frozenset(), "expired"),
    (NOW, frozenset({"j1"}), "revoked"),
])
def test_refresh_refuses_expired_or_revoked(
    keyring: Keyring, token: str, now: float, revoked: frozenset[str], match: str
) -> None:
    with pytest.raises(Unauthenticated, match=match):
        refresh(token, keyring, now=now, ttl=TTL, new_jti="j2", revoked=revoked)


def test_refresh_needs_a_new_jti(keyring: Keyring, token: str) -> None:
    with pytest.raises(InvalidInput, match="new token id"):
        refresh(token, keyring, now=NOW, ttl=TTL, new_jti="j1")


@pytest.mark.parametrize("kwargs", [
    {"ttl": 0}, {"ttl": -1}, {"ttl": float("inf")}, {"ttl": float("nan")},
    {"role": "root"}, {"sub": "a.b"}, {"jti": "../x"},
    {"role": "worker"}, {"wid": "w1"}, {"role": "worker", "wid": "w.1"},
], ids=repr)
def test_issue_refuses_bad_input(keyring: Keyring, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"sub": "alice", "role": "admin", "ttl": TTL, "now": NOW,
                               "jti": "j1", **kwargs}
    with pytest.raises(InvalidInput):
        issue(keyring, **args)  # type: ignore[arg-type]


def test_new_token_ids_are_valid_and_distinct(keyring: Keyring) -> None:
    ids = {new_token_id() for _ in range(100)}
    assert len(ids) == 100
    for jti in list(ids)[:5]:
        issue(keyring, sub="a", role="reader", ttl=TTL, now=NOW, jti=jti)


def test_a_token_id_is_never_read_as_an_option() -> None:
    """`dtf token revoke JTI`: a jti starting with '-' was refused as an unknown argument
    (one in 64; CI met one)."""
    from cli.args import parser

    ids = [new_token_id() for _ in range(5000)]
    assert not any(jti.startswith("-") for jti in ids)
    assert all(parser().parse_args(["token", "revoke", jti]).jti == jti for jti in ids[:200])
