"""Events of the auth aggregate: tokens, worker API keys and signing keys.

Subjects: ``dtf.evt.auth.<auth_id>.<type>`` where ``auth_id`` is a token's jti, an API
key's id or a signing key's kid. No secret is ever in an event: tokens are recorded by
their claims, API keys by their salted hash, signing keys by their public half.
"""

from __future__ import annotations

from msgspec import Struct


class AuthEventBase(Struct, frozen=True, kw_only=True, tag_field="type"):
    auth_id: str
    at: float
    actor: str


class TokenIssued(AuthEventBase, frozen=True, kw_only=True, tag="token_issued"):
    sub: str
    role: str
    exp: float
    wid: str | None = None
    # a refreshed token: the token (or worker API key) it was refreshed from. Revoking any
    # of its ancestors revokes it.
    parent: str | None = None


class TokenRevoked(AuthEventBase, frozen=True, kw_only=True, tag="token_revoked"):
    reason: str = ""


class ApiKeyCreated(AuthEventBase, frozen=True, kw_only=True, tag="apikey_created"):
    worker_id: str
    scheme: str
    n: int
    r: int
    p: int
    salt: bytes
    hash: bytes


class ApiKeyRevoked(AuthEventBase, frozen=True, kw_only=True, tag="apikey_revoked"):
    reason: str = ""


class SigningKeyAdded(AuthEventBase, frozen=True, kw_only=True, tag="key_added"):
    public_key: bytes


class SigningKeyRetired(AuthEventBase, frozen=True, kw_only=True, tag="key_retired"):
    pass


AuthEvent = (
    TokenIssued | TokenRevoked | ApiKeyCreated | ApiKeyRevoked | SigningKeyAdded
    | SigningKeyRetired
)
