"""Issue, verify and refresh DTF access tokens: EdDSA JWTs per RFC 8725.

Pure apart from the signature itself: ``now`` and ``jti`` come in as arguments (an agent
passes ``time.time()`` and ``new_token_id()``). ``verify`` fails closed: every problem raises
``Unauthenticated`` with the reason, and nothing else escapes it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Container
from typing import Annotated, Protocol

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agents.auth import jws
from agents.auth.errors import Unauthenticated
from agents.auth.roles import Role
from dtf_core.errors import InvalidInput
from dtf_core.ids import validate_id

ISSUER = "dtf"
AUDIENCE = "dtf-api"
LEEWAY_S = 30.0
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti")

Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Revoked = Container[str] | Callable[[str], bool]
SCOPED_ROLES = (Role.WORKER, Role.AUTOSCALER)  # the tokens that carry a wid


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    """The claims of a verified token. ``wid`` scopes a worker token to one worker, an
    autoscaler's to one worker group."""

    iss: str
    aud: str
    sub: Id
    role: Role
    iat: int
    nbf: int
    exp: int
    jti: Id
    wid: Id | None = None


class SigningKeys(Protocol):
    def signing_key(self) -> tuple[str, Ed25519PrivateKey]: ...


class VerificationKeys(Protocol):
    def verification_key(self, kid: str) -> Ed25519PublicKey: ...


class TokenKeys(SigningKeys, VerificationKeys, Protocol):
    """Both halves: what ``refresh`` needs (a ``Keyring`` is one)."""


def new_token_id() -> str:
    """A fresh random ``jti`` (22 base64url characters), never starting with ``-``: people
    type it as an argument (`dtf token revoke JTI`), where a leading dash reads as an option
    (one id in 64 did, and was refused as an unknown argument)."""
    while (jti := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return jti


def issue(
    keys: SigningKeys,
    *,
    sub: str,
    role: Role | str,
    ttl: float,
    now: float,
    jti: str,
    wid: str | None = None,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
) -> str:
    """A signed token for ``sub`` with ``role``, valid from ``now`` for ``ttl`` seconds."""
    if not (math.isfinite(ttl) and ttl > 0 and math.isfinite(now)):
        raise InvalidInput(f"invalid token lifetime: ttl={ttl!r} now={now!r}")
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput(f"unknown role {role!r}") from None
    if (role in SCOPED_ROLES) != (wid is not None):
        raise InvalidInput("a worker token needs a worker id (wid), an autoscaler's its worker "
                           "group (wid), and no other token has one")
    claims = Claims(
        iss=issuer, aud=audience, sub=validate_id(sub, "subject"), role=role,
        iat=int(now), nbf=int(now), exp=int(now + ttl), jti=validate_id(jti, "token id"),
        wid=None if wid is None else validate_id(wid, "worker id"),
    )
    kid, private_key = keys.signing_key()
    return jws.encode_compact(kid, msgspec.json.encode(claims), private_key)


def _is_revoked(revoked: Revoked, jti: str) -> bool:
    if callable(revoked):
        return bool(revoked(jti))
    return jti in revoked


def _decode_claims(payload: bytes) -> Claims:
    try:
        raw = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        raise Unauthenticated("token rejected: claims are not JSON") from None
    if not isinstance(raw, dict):
        raise Unauthenticated("token rejected: claims are not a JSON object")
    missing = [name for name in REQUIRED_CLAIMS if name not in raw]
    if missing:
        raise Unauthenticated(f"token rejected: missing required claim(s) {', '.join(missing)}")
    try:
        return msgspec.convert(raw, type=Claims)
    except msgspec.ValidationError as exc:
        raise Unauthenticated(f"token rejected: invalid claims: {exc}") from None


def _check_claims(
    claims: Claims, *, now: float, issuer: str, audience: str, leeway: float
) -> None:
    if claims.iss != issuer:
        raise Unauthenticated(f"token rejected: issuer {claims.iss!r} is not {issuer!r}")
    if claims.aud != audience:
        raise Unauthenticated(f"token rejected: audience {claims.aud!r} is not {audience!r}")
    if now >= claims.exp + leeway:
        raise Unauthenticated(f"token rejected: expired at {claims.exp} (now {now:.0f})")
    if now + leeway < claims.nbf:
        raise Unauthenticated(f"token rejected: not valid before {claims.nbf} (now {now:.0f})")
    if now + leeway < claims.iat:
        raise Unauthenticated(f"token rejected: issued in the future, iat {claims.iat}")
    if (claims.role in SCOPED_ROLES) != (claims.wid is not None):
        raise Unauthenticated("token rejected: wid must be present exactly on worker and "
                              "autoscaler tokens")


def authentic(token: str | bytes, keys: VerificationKeys) -> tuple[Claims, str]:
    """The claims of ``token`` and the id of the key that signed it, if its signature is
    good; what can change with time or the log (expiry, revocation) is ``check_current``'s."""
    parsed = jws.parse_compact(token)
    jws.verify_signature(parsed, keys.verification_key(parsed.kid))
    return _decode_claims(parsed.payload), parsed.kid


def check_current(
    claims: Claims,
    *,
    now: float,
    revoked: Revoked = frozenset(),
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    leeway: float = LEEWAY_S,
) -> Claims:
    """``claims`` if they are for us, current and not revoked."""
    _check_claims(claims, now=now, issuer=issuer, audience=audience, leeway=leeway)
    if _is_revoked(revoked, claims.jti):
        raise Unauthenticated(f"token rejected: token id {claims.jti!r} was revoked")
    return claims


def verify(
    token: str | bytes,
    keys: VerificationKeys,
    *,
    now: float,
    revoked: Revoked = frozenset(),
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    leeway: float = LEEWAY_S,
) -> Claims:
    """The claims of ``token`` if it is authentic, current and not revoked."""
    claims, _ = authentic(token, keys)
    return check_current(claims, now=now, revoked=revoked, issuer=issuer, audience=audience,
                         leeway=leeway)


def refresh(
    token: str | bytes,
    keys: TokenKeys,
    *,
    now: float,
    ttl: float,
    new_jti: str,
    revoked: Revoked = frozenset(),
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    leeway: float = LEEWAY_S,
) -> str:
    """Verify ``token``, then issue a new one (new ``jti`` and ``exp``, same sub/role/wid).

    The caller should revoke the old ``jti`` if refresh is meant to be single-use.
    """
    old = verify(token, keys, now=now, revoked=revoked, issuer=issuer, audience=audience,
                 leeway=leeway)
    if new_jti == old.jti:
        raise InvalidInput("a refreshed token needs a new token id")
    return issue(keys, sub=old.sub, role=old.role, ttl=ttl, now=now, jti=new_jti, wid=old.wid,
                 issuer=issuer, audience=audience)
