"""Crafting tokens for the token tests: a fixed clock, good claims and headers, any JWS."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.auth.jws import b64url_encode
from agents.auth.keyring import Keyring
from agents.auth.tokens import AUDIENCE, ISSUER

NOW = 1_700_000_000.0
TTL = 900.0


def good_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "role": "manager",
        "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW + TTL), "jti": "j1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def good_header(kid: str, **changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "dtf+jwt", "kid": kid}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def craft(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey | None) -> str:
    """A compact JWS of arbitrary header and claims, signed by ``key`` (or unsigned)."""
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode()) if key is not None else b""
    return f"{signing_input}.{b64url_encode(signature)}"


def signed(keyring: Keyring, header: dict[str, Any], claims: dict[str, Any]) -> str:
    return craft(header, claims, keyring.signing_key()[1])
