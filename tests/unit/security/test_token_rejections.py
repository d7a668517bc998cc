"""The negative matrix: every malformed, forged or stale token fails closed with a reason."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.auth.errors import Unauthenticated
from agents.auth.jws import MAX_TOKEN_BYTES, b64url_encode
from agents.auth.keyring import Keyring, public_raw
from agents.auth.tokens import REQUIRED_CLAIMS, issue, verify
from tests.unit.security.crafting import NOW, TTL, craft, good_claims, good_header, signed


def rejected(token: object, keyring: Keyring, match: str, **kwargs: object) -> None:
    options: dict[str, object] = {"now": NOW, **kwargs}
    with pytest.raises(Unauthenticated, match=match) as info:
        verify(token, keyring, **options)  # type: ignore[arg-type]
    assert str(info.value).startswith("token rejected:")


def test_alg_none_is_refused(keyring: Keyring) -> None:
    token = craft(good_header(keyring.current_kid, alg="none"), good_claims(), None)
    assert token.endswith(".")
    rejected(token, keyring, "algorithm 'none' is not allowed")


def test_alg_none_without_kid_or_typ_is_refused(keyring: Keyring) -> None:
    token = craft({"alg": "none"}, good_claims(), None)
    rejected(token, keyring, "algorithm 'none' is not allowed")


def test_hs256_with_the_public_key_as_secret_is_refused(keyring: Keyring) -> None:
    secret = public_raw(keyring.signing_key()[1].public_key())
    header = good_header(keyring.current_kid, alg="HS256")
    unsigned = craft(header, good_claims(), None).rstrip(".")
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    rejected(f"{unsigned}.{b64url_encode(mac)}", keyring, "algorithm 'HS256' is not allowed")


def test_rs256_with_a_random_rsa_key_is_refused(keyring: Keyring) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(good_claims(), rsa_key, algorithm="RS256",
                       headers={"kid": keyring.current_kid, "typ": "dtf+jwt"})
    rejected(token, keyring, "algorithm 'RS256' is not allowed")


@pytest.mark.parametrize(("claims", "match"), [
    (good_claims(iss="evil"), "issuer 'evil' is not 'dtf'"),
    (good_claims(aud="other-api"), "audience 'other-api' is not 'dtf-api'"),
    (good_claims(aud=["dtf-api"]), "invalid claims: Expected `str`, got `array` - at `\\$.aud`"),
    (good_claims(exp=int(NOW) - 31), "expired at"),
    (good_claims(nbf=int(NOW) + 31), "not valid before"),
    (good_claims(iat=int(NOW) + 31), "issued in the future"),
    (good_claims(role="root"), "invalid claims: Invalid enum value 'root'"),
    (good_claims(iat=float(NOW)), "invalid claims: Expected `int`"),
    (good_claims(sub="a.b"), "invalid claims: .* at `\\$.sub`"),
    (good_claims(role="worker"), "wid must be present exactly on worker and autoscaler tokens"),
    (good_claims(wid="w1"), "wid must be present exactly on worker and autoscaler tokens"),
    (good_claims(role="autoscaler"),
     "wid must be present exactly on worker and autoscaler tokens"),
], ids=["iss", "aud", "aud-list", "expired", "nbf-future", "iat-future", "unknown-role",
        "float-iat", "sub-not-id", "worker-without-wid", "wid-on-manager",
        "autoscaler-without-group"])
def test_bad_claims_are_refused(keyring: Keyring, claims: dict[str, object], match: str) -> None:
    rejected(signed(keyring, good_header(keyring.current_kid), claims), keyring, match)


@pytest.mark.parametrize("name", REQUIRED_CLAIMS)
def test_each_required_claim_is_required(keyring: Keyring, name: str) -> None:
    claims = good_claims(**{name: None})
    rejected(signed(keyring, good_header(keyring.current_kid), claims), keyring,
             f"missing required claim\\(s\\) {name}")


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/tmp/x", "a/b", "..", "a.b", "", "k" * 65,
                                 "a b", "a\x00b"])
def test_path_like_or_bad_kid_is_refused(keyring: Keyring, kid: str) -> None:
    rejected(signed(keyring, good_header(kid), good_claims()), keyring, "is missing or not a plain")


def test_missing_kid_is_refused(keyring: Keyring) -> None:
    token = signed(keyring, {"alg": "EdDSA", "typ": "dtf+jwt"}, good_claims())
    rejected(token, keyring, "key id None is missing")


def test_unknown_kid_is_refused(keyring: Keyring) -> None:
    rejected(signed(keyring, good_header("nosuchkid"), good_claims()), keyring,
             "unknown key id 'nosuchkid'")


@pytest.mark.parametrize(("typ", "match"), [
    ("JWT", "type 'JWT' is not 'dtf\\+jwt'"),
    (None, "type None is not"),
    ("at+jwt", "type 'at\\+jwt'"),
])
def test_wrong_typ_is_refused(keyring: Keyring, typ: str | None, match: str) -> None:
    token = signed(keyring, good_header(keyring.current_kid, typ=typ), good_claims())
    rejected(token, keyring, match)


@pytest.mark.parametrize("param", ["crit", "jku", "x5u", "jwk"])
def test_unknown_header_parameters_are_refused(keyring: Keyring, param: str) -> None:
    header = good_header(keyring.current_kid, **{param: "x"})
    rejected(signed(keyring, header, good_claims()), keyring, f"unknown field `{param}`")


def test_revoked_jti_is_refused_as_container_or_callable(keyring: Keyring, token: str) -> None:
    rejected(token, keyring, "token id 'j1' was revoked", revoked={"j1"})
    rejected(token, keyring, "was revoked", revoked=lambda jti: jti == "j1")


@pytest.mark.parametrize("garbage", [
    "", "abc", "a.b.c", "a.b", "a.b.c.d", "...", "eyJ.eyJ.", "a=.b.c", "ä.b.c",
    bytes(range(200, 248)), b"\xff\xfe.\x00.\x01", None, 42, ["a", "b", "c"],
], ids=repr)
def test_garbage_is_refused(keyring: Keyring, garbage: object) -> None:
    rejected(garbage, keyring, "token rejected")


def test_header_that_is_not_an_object_is_refused(keyring: Keyring) -> None:
    token = ".".join(b64url_encode(p) for p in (b"[1]", b"{}", b"x"))
    rejected(token, keyring, "invalid header")


def test_deeply_nested_header_is_refused(keyring: Keyring) -> None:
    token = b64url_encode(b'{"x":' + b"[" * 3000 + b"]" * 3000 + b"}") + ".e30.AA"
    rejected(token, keyring, "invalid header: Object contains unknown field `x`")


def test_oversized_token_is_refused_before_parsing(keyring: Keyring, token: str) -> None:
    padded = token + "A" * (MAX_TOKEN_BYTES + 1 - len(token))
    rejected(padded, keyring, f"larger than {MAX_TOKEN_BYTES} bytes")
    rejected("x" * (MAX_TOKEN_BYTES + 1), keyring, "larger than")
    rejected(b"." * (MAX_TOKEN_BYTES + 1), keyring, "larger than")


def test_signature_by_a_key_outside_the_keyring_is_refused(keyring: Keyring) -> None:
    stranger = Ed25519PrivateKey.generate()
    rejected(craft(good_header(keyring.current_kid), good_claims(), stranger), keyring,
             "bad signature")


def test_token_of_another_keyring_is_refused(keyring: Keyring, tmp_path: Path) -> None:
    other = Keyring.create(tmp_path / "other")
    token = issue(other, sub="alice", role="admin", ttl=TTL, now=NOW, jti="j1")
    rejected(token, keyring, "unknown key id")


def _flip_role(token: str) -> str:
    header, payload, sig = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["role"] = "admin"
    forged = b64url_encode(json.dumps(claims).encode())
    return f"{header}.{forged}.{sig}"


def _drop_signature(token: str) -> str:
    return token.rsplit(".", 1)[0] + "."


def _truncate_signature(token: str) -> str:
    return token[:-4]


def _non_canonical_signature(token: str) -> str:
    # The last base64url character of 64 bytes carries 2 unused bits; set them.
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:-1] + alphabet[alphabet.index(last) | 1]


def _padded(token: str) -> str:
    return token + "=="


@pytest.mark.parametrize(("tamper", "match"), [
    (_flip_role, "bad signature"),
    (_drop_signature, "bad signature length"),
    (_truncate_signature, "signature"),
    (_non_canonical_signature, "not canonical base64url"),
    (_padded, "not base64url"),
], ids=["flip-claim", "no-signature", "truncated", "non-canonical", "padded"])
def test_tampered_token_is_refused(
    keyring: Keyring, token: str, tamper: Callable[[str], str], match: str
) -> None:
    rejected(tamper(token), keyring, match)


def test_retired_kid_is_refused(keyring: Keyring, token: str) -> None:
    old = keyring.current_kid
    keyring.rotate()
    keyring.retire(old)
    rejected(token, keyring, f"key id '{old}' was retired")
    rejected(token, Keyring.load(keyring.path.parent), "was retired")
