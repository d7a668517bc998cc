"""NATS nkeys: Ed25519 keys as base32 strings with a type prefix byte and a CRC16 checksum.

A public key is ``base32(prefix | key32 | crc16le)``; a seed is
``base32(seed_prefix_and_type(2 bytes) | seed32 | crc16le)`` (seeds start with ``S`` and
their second letter is the key type: ``SA`` account, ``SU`` user, ``SN`` server).
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX_SEED = 18 << 3  # 'S'
PREFIX_PRIVATE = 15 << 3  # 'P'
PREFIX_SERVER = 13 << 3  # 'N'
PREFIX_CLUSTER = 2 << 3  # 'C'
PREFIX_OPERATOR = 14 << 3  # 'O'
PREFIX_ACCOUNT = 0  # 'A'
PREFIX_USER = 20 << 3  # 'U'
PUBLIC_PREFIXES = frozenset(
    {PREFIX_SERVER, PREFIX_CLUSTER, PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER}
)


class NkeyError(ValueError):
    """A string that is not a valid nkey of the expected type."""


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial value 0), as nkeys use: the standard
    library's, in C (the auth callout checks one for every login)."""
    return binascii.crc_hqx(data, 0)


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _b32decode(text: str) -> bytes:
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise NkeyError(f"not base32: {text!r}") from exc


def _checked(raw: bytes) -> bytes:
    return raw + crc16(raw).to_bytes(2, "little")


def _unchecked(text: str) -> bytes:
    raw = _b32decode(text)
    if len(raw) < 4 or crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        raise NkeyError("bad nkey checksum")
    return raw[:-2]


def encode_public(prefix: int, key: bytes) -> str:
    if prefix not in PUBLIC_PREFIXES or len(key) != 32:
        raise NkeyError(f"invalid public key prefix {prefix} or length {len(key)}")
    return _b32encode(_checked(bytes([prefix]) + key))


def decode_public(text: str, prefix: int | None = None) -> tuple[int, bytes]:
    """Return (prefix, 32-byte key) of a public nkey, checking its type if ``prefix`` is set."""
    raw = _decoded_public(text)
    if len(raw) != 33 or raw[0] not in PUBLIC_PREFIXES:
        raise NkeyError(f"not a public nkey: {text!r}")
    if prefix is not None and raw[0] != prefix:
        raise NkeyError(f"public nkey {text!r} is not of the expected type")
    return raw[0], raw[1:]


@functools.lru_cache(maxsize=1024)
def _decoded_public(text: str) -> bytes:
    return _unchecked(text)  # the same few keys (the server's, the issuer's) every login


def is_valid_public(text: str, prefix: int) -> bool:
    try:
        decode_public(text, prefix)
    except NkeyError:
        return False
    return True


def encode_seed(prefix: int, seed: bytes) -> str:
    if prefix not in PUBLIC_PREFIXES or len(seed) != 32:
        raise NkeyError(f"invalid seed prefix {prefix} or length {len(seed)}")
    head = bytes([PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3])
    return _b32encode(_checked(head + seed))


def decode_seed(text: str) -> tuple[int, bytes]:
    """Return (key type prefix, 32-byte Ed25519 seed) of an encoded seed."""
    raw = _unchecked(text)
    if len(raw) != 34 or raw[0] & 0xF8 != PREFIX_SEED:
        raise NkeyError("not an nkey seed")
    prefix = ((raw[0] & 7) << 5) | ((raw[1] & 0xF8) >> 3)
    if prefix not in PUBLIC_PREFIXES:
        raise NkeyError(f"seed of unknown key type {prefix}")
    return prefix, raw[2:]


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    try:
        _, key = decode_public(public_key)
        _public(key).verify(signature, data)
    except (NkeyError, InvalidSignature):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=64)
def _private(raw_seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw_seed)


@dataclass(frozen=True)
class KeyPair:
    """An nkey with its private half: sign with it, publish ``public_key``, keep ``seed`` secret."""

    prefix: int
    raw_seed: bytes

    @classmethod
    def create(cls, prefix: int) -> KeyPair:
        key = Ed25519PrivateKey.generate()
        return cls(prefix, key.private_bytes_raw())

    @classmethod
    def from_seed(cls, seed: str) -> KeyPair:
        return cls(*decode_seed(seed))

    def _key(self) -> Ed25519PrivateKey:
        return _private(self.raw_seed)

    @property
    def seed(self) -> str:
        return encode_seed(self.prefix, self.raw_seed)

    @property
    def public_key(self) -> str:
        raw = self._key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return encode_public(self.prefix, raw)

    def sign(self, data: bytes) -> bytes:
        return self._key().sign(data)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair({self.public_key})"
