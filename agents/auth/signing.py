"""Result signing (defence in depth): a worker signs its report bytes with its own Ed25519 key,
or authenticates them with its session's report key (an HMAC-SHA256 key the control plane
derives for the session and hands over in the registration's answer only: ADR 0020).

The api agent verifies with the public key the worker registered, or with the session's key.
A context string goes with the payload, so a tag made for one purpose is never valid for
another.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agents.auth.errors import Unauthenticated

RESULT_CONTEXT = b"dtf.result.v1"
SIGNATURE_BYTES = 64
MAC_BYTES = 32


def canonical_bytes(report: Any) -> bytes:
    """Deterministic msgpack of a report (a msgspec Struct or plain data): what gets signed."""
    return msgspec.msgpack.encode(report, order="deterministic")


def _message(context: bytes, payload: bytes) -> bytes:
    return len(context).to_bytes(2, "big") + context + payload


def sign(private_key: Ed25519PrivateKey, payload: bytes, *,
         context: bytes = RESULT_CONTEXT) -> bytes:
    return private_key.sign(_message(context, payload))


def verify_signature(public_key: Ed25519PublicKey, payload: bytes, signature: bytes, *,
                     context: bytes = RESULT_CONTEXT) -> None:
    """Raise Unauthenticated unless ``signature`` is ``public_key``'s over ``payload``."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise Unauthenticated("signature rejected: wrong length")
    try:
        public_key.verify(signature, _message(context, payload))
    except InvalidSignature:
        raise Unauthenticated("signature rejected: does not match the payload") from None


def mac(key: bytes, payload: bytes, *, context: bytes = RESULT_CONTEXT) -> bytes:
    """A session's tag over ``payload`` with its report key (HMAC-SHA256)."""
    return hmac.digest(key, _message(context, payload), hashlib.sha256)


def verify_mac(key: bytes, payload: bytes, tag: bytes, *,
               context: bytes = RESULT_CONTEXT) -> None:
    """Raise Unauthenticated unless ``tag`` is ``key``'s over ``payload``."""
    if not isinstance(tag, bytes) or len(tag) != MAC_BYTES \
            or not hmac.compare_digest(mac(key, payload, context=context), tag):
        raise Unauthenticated("report tag rejected: not the session's")


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes a worker registers."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.lru_cache(maxsize=1024)  # a worker's or a signer's key, loaded once, not per report
def public_key_from_bytes(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise Unauthenticated("public key rejected: an Ed25519 key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)
