"""NATS JWTs (version 2): ``base64url(header).base64url(claims).base64url(ed25519 sig)``.

The signature covers the ASCII ``header.claims`` and is made by the key named in ``iss``;
nats-server checks the issuer's key type per claim type (the server signs authorization
requests with its ``N`` key, an account ``A`` key signs user JWTs and authorization
responses).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.auth.natsauth import nkeys
from agents.auth.natsauth.permissions import Permissions

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
USER = "user"
AUTH_REQUEST = "authorization_request"
AUTH_RESPONSE = "authorization_response"
AUTH_REQUEST_AUDIENCE = "nats-authorization-request"
NO_LIMIT = -1


class JwtError(ValueError):
    """A token that is malformed, badly signed, of the wrong type or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwtError("not base64url") from exc


def _jti(claims: Mapping[str, Any]) -> str:
    """A content hash as nats-io/jwt makes it (sha512/256 of the claims, base32)."""
    body = json.dumps(dict(claims), sort_keys=True, separators=(",", ":")).encode()
    return base64.b32encode(hashlib.new("sha512_256", body).digest()).decode().rstrip("=")


def encode(claims: Mapping[str, Any], issuer: nkeys.KeyPair) -> str:
    """Sign ``claims`` as ``issuer`` (setting ``iss``, ``iat`` and ``jti``)."""
    body = {k: v for k, v in claims.items() if k != "jti"}
    body["iss"] = issuer.public_key
    body.setdefault("iat", int(time.time()))
    body["jti"] = _jti(body)
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signed = f"{head}.{payload}"
    return f"{signed}.{_b64(issuer.sign(signed.encode('ascii')))}"


def decode(token: str, issuer_prefix: int | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Verify ``token``'s signature against its own ``iss`` and return its claims.

    ``issuer_prefix`` requires the issuer to be that kind of key; ``exp``/``nbf`` are
    checked against ``now``. Whether the issuer is *trusted* is the caller's decision."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("expected 3 dot-separated parts")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except json.JSONDecodeError as exc:
        raise JwtError("header or claims are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("header and claims must be JSON objects")
    if str(header.get("typ", "")).upper() != "JWT" or header.get("alg") != HEADER["alg"]:
        raise JwtError(f"unsupported JWT header {header!r}")
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise JwtError("no issuer")
    if issuer_prefix is not None and not nkeys.is_valid_public(issuer, issuer_prefix):
        raise JwtError(f"issuer {issuer!r} is not the expected kind of key")
    signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    if not nkeys.verify(issuer, signed, _unb64(parts[2])):
        raise JwtError("bad signature")
    t = time.time() if now is None else now
    if isinstance(claims.get("exp"), int) and claims["exp"] > 0 and t > claims["exp"]:
        raise JwtError("expired")
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > t:
        raise JwtError("not yet valid")
    return claims


@dataclass(frozen=True)
class AuthorizationRequest:
    """What the server tells the callout about a connecting client."""

    user_nkey: str
    server_id: str
    server_name: str
    client_info: dict[str, Any]
    connect_opts: dict[str, Any]

    @property
    def client_id(self) -> int:
        return int(self.client_info.get("id", 0))

    @property
    def token(self) -> str:
        """The credential the client presented: its ``token``, else its password."""
        opts = self.connect_opts
        return str(opts.get("auth_token") or opts.get("pass") or "")


def decode_request(token: str) -> AuthorizationRequest:
    """Decode and verify (signed by the server's own key) an authorization request."""
    claims = decode(token, nkeys.PREFIX_SERVER)
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != AUTH_REQUEST:
        raise JwtError("not an authorization request")
    if claims.get("aud") != AUTH_REQUEST_AUDIENCE:
        raise JwtError("authorization request for another audience")
    server = nats.get("server_id") or {}
    user_nkey = nats.get("user_nkey")
    if not isinstance(user_nkey, str) or not nkeys.is_valid_public(user_nkey, nkeys.PREFIX_USER):
        raise JwtError("authorization request without a user nkey")
    server_id = server.get("id")
    if server_id != claims["iss"]:
        raise JwtError("authorization request not signed by the server it names")
    return AuthorizationRequest(
        user_nkey=user_nkey,
        server_id=server_id,
        server_name=str(server.get("name", "")),
        client_info=dict(nats.get("client_info") or {}),
        connect_opts=dict(nats.get("connect_opts") or {}),
    )


def user_claims(user_nkey: str, account: str, perms: Permissions, name: str = "",
                expires: int | None = None) -> dict[str, Any]:
    """User JWT claims; in server-config mode ``aud`` names the account the user lands in."""
    nats: dict[str, Any] = {
        "pub": {"allow": list(perms.publish)},
        "sub": {"allow": list(perms.subscribe)},
        "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
        "type": USER, "version": 2,
    }
    if perms.publish_deny:
        nats["pub"]["deny"] = list(perms.publish_deny)
    if perms.subscribe_deny:
        nats["sub"]["deny"] = list(perms.subscribe_deny)
    claims: dict[str, Any] = {"sub": user_nkey, "aud": account, "nats": nats}
    if name:
        claims["name"] = name
    if expires is not None:
        claims["exp"] = int(expires)
    return claims


def authorization_response(request: AuthorizationRequest, issuer: nkeys.KeyPair, *,
                           user_jwt: str = "", error: str = "") -> str:
    """The signed reply to ``request``: a user JWT to admit the client, or an error."""
    if bool(user_jwt) == bool(error):
        raise ValueError("give exactly one of user_jwt and error")
    nats: dict[str, Any] = {"type": AUTH_RESPONSE, "version": 2}
    nats["jwt" if user_jwt else "error"] = user_jwt or error
    claims = {"sub": request.user_nkey, "aud": request.server_id, "nats": nats}
    return encode(claims, issuer)
