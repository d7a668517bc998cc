"""JWS compact serialisation (RFC 7515) restricted to EdDSA, parsed strictly and fail-closed.

Parsing happens in a fixed order, each step refusing with ``Unauthenticated``: size (before
anything else), type and ASCII, three parts, canonical base64url, header with no unknown
parameters (so no ``crit``, ``jku``, ``x5u``...), ``alg`` on the allow-list, ``typ``, and a
``kid`` that is a plain id token, never a path. The signature is checked by ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agents.auth.errors import Unauthenticated

MAX_TOKEN_BYTES = 8 * 1024
ALGORITHM = "EdDSA"
TOKEN_TYPE = "dtf+jwt"
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class Header(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alg: str
    typ: str | None = None
    kid: str | None = None


class Parsed(NamedTuple):
    header: Header
    kid: str
    signing_input: bytes
    payload: bytes
    signature: bytes


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Decode unpadded base64url, refusing other alphabets and non-canonical encodings."""
    if _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise Unauthenticated(f"token rejected: {what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Unauthenticated(f"token rejected: {what} is not base64url") from None
    if b64url_encode(data) != text:
        raise Unauthenticated(f"token rejected: {what} is not canonical base64url")
    return data


def encode_compact(kid: str, payload: bytes, key: Ed25519PrivateKey) -> str:
    header = msgspec.json.encode(Header(alg=ALGORITHM, typ=TOKEN_TYPE, kid=kid))
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def _as_text(token: object) -> str:
    if not isinstance(token, (str, bytes)):
        raise Unauthenticated("token rejected: a token must be a string")
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated(f"token rejected: larger than {MAX_TOKEN_BYTES} bytes")
    if isinstance(token, bytes):
        try:
            return token.decode("ascii")
        except UnicodeDecodeError:
            raise Unauthenticated("token rejected: not ASCII") from None
    if not token.isascii():
        raise Unauthenticated("token rejected: not ASCII")
    return token


def _header(text: str) -> Header:
    try:
        header = msgspec.json.decode(b64url_decode(text, "header"), type=Header)
    except msgspec.DecodeError as exc:
        raise Unauthenticated(f"token rejected: invalid header: {exc}") from None
    if header.alg != ALGORITHM:
        raise Unauthenticated(
            f"token rejected: algorithm {header.alg!r} is not allowed (only {ALGORITHM})"
        )
    if header.typ != TOKEN_TYPE:
        raise Unauthenticated(f"token rejected: type {header.typ!r} is not {TOKEN_TYPE!r}")
    return header


def parse_compact(token: object) -> Parsed:
    """Split and check a compact JWS up to (not including) its signature."""
    text = _as_text(token)
    if not text:
        raise Unauthenticated("token rejected: empty token")
    parts = text.split(".")
    if len(parts) != 3:
        raise Unauthenticated("token rejected: not a JWS compact token (3 dot-separated parts)")
    header = _header(parts[0])
    kid = header.kid
    if kid is None or KID_PATTERN.fullmatch(kid) is None:
        raise Unauthenticated(f"token rejected: key id {kid!r} is missing or not a plain id")
    payload = b64url_decode(parts[1], "payload")
    signature = b64url_decode(parts[2], "signature")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return Parsed(header, kid, signing_input, payload, signature)


def verify_signature(parsed: Parsed, key: Ed25519PublicKey) -> None:
    if len(parsed.signature) != 64:
        raise Unauthenticated("token rejected: bad signature length")
    try:
        key.verify(parsed.signature, parsed.signing_input)
    except InvalidSignature:
        raise Unauthenticated("token rejected: bad signature") from None
