"""Result signing (defence in depth): a worker signs its report bytes with its own Ed25519 key.

The api agent verifies with the public key the worker registered. A context string is signed
with the payload, so a signature made for one purpose is never valid for another.
"""

from __future__ import annotations

import functools
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


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes a worker registers."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.lru_cache(maxsize=1024)  # a worker's or a signer's key, loaded once, not per report
def public_key_from_bytes(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise Unauthenticated("public key rejected: an Ed25519 key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)
