"""What the auth events fold into: revoked tokens, API key records, public signing keys."""

from __future__ import annotations

import hashlib

import msgspec

from dtf_core.events.auth import (
    ApiKeyCreated,
    ApiKeyRevoked,
    AuthEventBase,
    SigningKeyAdded,
    SigningKeyRetired,
    TokenIssued,
    TokenRevoked,
)

_enc = msgspec.msgpack.Encoder(order="deterministic")


class AuthState:
    def __init__(self) -> None:
        self.issued: dict[str, TokenIssued] = {}
        self.revoked: dict[str, TokenRevoked] = {}
        self.api_keys: dict[str, ApiKeyCreated] = {}
        self.revoked_keys: set[str] = set()
        self.public_keys: dict[str, bytes] = {}
        self.retired_keys: set[str] = set()
        self.last_refresh: dict[str, float] = {}  # parent jti -> when it was last refreshed

    def apply(self, event: AuthEventBase) -> None:
        match event:
            case TokenIssued():
                self.issued.setdefault(event.auth_id, event)
                if event.parent is not None:
                    self.last_refresh[event.parent] = max(
                        event.at, self.last_refresh.get(event.parent, 0.0))
            case TokenRevoked():
                self.revoked.setdefault(event.auth_id, event)
            case ApiKeyCreated():
                self.api_keys.setdefault(event.auth_id, event)
            case ApiKeyRevoked():
                self.revoked_keys.add(event.auth_id)
            case SigningKeyAdded():
                self.public_keys.setdefault(event.auth_id, event.public_key)
            case SigningKeyRetired():
                self.retired_keys.add(event.auth_id)

    def is_revoked(self, jti: str) -> bool:
        """Revoked itself, or any token or worker API key it was refreshed from."""
        seen: set[str] = set()
        current: str | None = jti
        while current is not None and current not in seen:
            if current in self.revoked or current in self.revoked_keys:
                return True
            seen.add(current)
            issued = self.issued.get(current)
            current = issued.parent if issued is not None else None
        return False

    def digest(self) -> bytes:
        h = hashlib.sha256()
        for part in (self.issued, self.revoked, self.api_keys, self.public_keys):
            for key in sorted(part):
                h.update(_enc.encode(part[key]))
        h.update(_enc.encode(sorted(self.revoked_keys)))
        h.update(_enc.encode(sorted(self.retired_keys)))
        return h.digest()
