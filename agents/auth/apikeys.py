"""Worker API keys: ``dtfk_<keyid>_<secret>``, shown once, stored only as an scrypt hash.

The key id (no ``_`` in it) finds the record; the whole key, hashed with the record's own
random salt, must match the stored hash (compared in constant time). A key belongs to one
worker id and grants role ``worker``; the api agent exchanges it for a short-lived token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from typing import NamedTuple

import msgspec

from agents.auth.errors import Unauthenticated
from agents.auth.roles import Role
from agents.auth.tokens import SigningKeys, issue
from dtf_core.ids import validate_id

PREFIX = "dtfk"
SCHEME = "scrypt"
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_API_KEY_CHARS = 256
_KEY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")  # no "_": it separates the parts
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored at rest: no secret, only its salted hash."""

    key_id: str
    worker_id: str
    role: Role = Role.WORKER
    scheme: str = SCHEME
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    salt: bytes
    hash: bytes


class NewApiKey(NamedTuple):
    plaintext: str  # show once, never store or log
    record: ApiKeyRecord


Lookup = Mapping[str, ApiKeyRecord] | Callable[[str], ApiKeyRecord | None]


def _hash(plaintext: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        plaintext.encode("ascii"), salt=salt, n=n, r=r, p=p,
        maxmem=128 * r * (n + p) + (1 << 20), dklen=HASH_BYTES,
    )


def create_api_key(worker_id: str) -> NewApiKey:
    """A new random key for ``worker_id`` and the record to store."""
    worker_id = validate_id(worker_id, "worker id")
    key_id = secrets.token_hex(8)
    plaintext = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _hash(plaintext, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return NewApiKey(plaintext, ApiKeyRecord(key_id=key_id, worker_id=worker_id, salt=salt,
                                             hash=digest))


def parse_api_key(presented: object) -> str:
    """The key id of a well-formed key; anything else is refused."""
    if not isinstance(presented, str) or len(presented) > MAX_API_KEY_CHARS:
        raise Unauthenticated("api key rejected: malformed key")
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if (prefix != PREFIX or _KEY_ID.fullmatch(key_id) is None
            or _SECRET.fullmatch(secret) is None):
        raise Unauthenticated("api key rejected: malformed key (expected dtfk_<keyid>_<secret>)")
    return key_id


def _find(lookup: Lookup, key_id: str) -> ApiKeyRecord | None:
    if callable(lookup):
        return lookup(key_id)
    return lookup.get(key_id)


def _params_ok(record: ApiKeyRecord) -> bool:
    return (record.scheme == SCHEME and SCRYPT_N <= record.n <= 2**17
            and record.n & (record.n - 1) == 0 and record.r == SCRYPT_R
            and 1 <= record.p <= 4 and len(record.salt) >= SALT_BYTES
            and len(record.hash) == HASH_BYTES)


def verify_api_key(presented: str, lookup: Lookup) -> ApiKeyRecord:
    """The record of ``presented`` if its secret matches; else Unauthenticated."""
    key_id = parse_api_key(presented)
    record = _find(lookup, key_id)
    if record is None or record.key_id != key_id:
        # Refused without hashing: scrypt is slow on purpose, and an unauthenticated client
        # must not make the control plane pay for it. Key ids are not secrets (they are in
        # the log); the secret half is what the hash guards.
        raise Unauthenticated("api key rejected: unknown key id or wrong secret")
    if not _params_ok(record):
        raise Unauthenticated(f"api key rejected: record {key_id!r} has unsupported hashing")
    digest = _hash(presented, record.salt, record.n, record.r, record.p)
    if not hmac.compare_digest(digest, record.hash):
        raise Unauthenticated("api key rejected: unknown key id or wrong secret")
    return record


def issue_worker_token(
    keys: SigningKeys, record: ApiKeyRecord, *, now: float, ttl: float, jti: str
) -> str:
    """The token an api key is exchanged for: role worker, scoped to the key's worker."""
    return issue(keys, sub=record.worker_id, role=Role.WORKER, ttl=ttl, now=now, jti=jti,
                 wid=record.worker_id)
