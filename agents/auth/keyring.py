"""The token signing keyring: Ed25519 keys by kid, one current, in one 0600 file.

``Keyring.create`` writes the file once (at the first ``dtf up``); later starts ``load`` it.
``rotate`` adds a new current key and keeps the old public keys for verification, so tokens
already issued stay valid until their kid is ``retire``-d. Only the current key's private half
is kept. ``public_keys`` exports what a remote verifier needs, with no secret in it.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agents.auth import keyfiles
from agents.auth.errors import KeyFileError, Unauthenticated
from dtf_core.ids import is_valid_id

KEYRING_FILE = "signing-keys.json"
FORMAT_VERSION = 1
_RAW = serialization.Encoding.Raw


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, serialization.PublicFormat.Raw)


def kid_for(key: Ed25519PublicKey) -> str:
    """A key id derived from the public key: 16 base64url characters of its SHA-256."""
    digest = hashlib.sha256(public_raw(key)).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:16]


class PublicKeys(msgspec.Struct, frozen=True, kw_only=True):
    """Verification keys only (raw Ed25519 public keys by kid); safe to publish."""

    current: str
    keys: dict[str, bytes]
    retired: frozenset[str] = frozenset()

    def verification_key(self, kid: str) -> Ed25519PublicKey:
        if kid in self.retired:
            raise Unauthenticated(f"token rejected: key id {kid!r} was retired")
        raw = self.keys.get(kid)
        if raw is None:
            raise Unauthenticated(f"token rejected: unknown key id {kid!r}")
        return Ed25519PublicKey.from_public_bytes(raw)

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes) -> PublicKeys:
        try:
            keys = msgspec.json.decode(data, type=cls)
        except msgspec.DecodeError as exc:
            raise KeyFileError(f"invalid public key set: {exc}") from None
        _check_public_keys(keys)
        return keys


def _check_public_keys(keys: PublicKeys) -> None:
    bad = [k for k, raw in keys.keys.items() if not is_valid_id(k) or len(raw) != 32]
    if bad or keys.current not in keys.keys:
        raise KeyFileError(f"invalid public key set: bad kids {bad} or current {keys.current!r}")


class _Entry(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    public: bytes
    private: bytes | None = None


class _File(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    current: str
    keys: list[_Entry]
    retired: list[str] = []


def _new_entry() -> _Entry:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    private = key.private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return _Entry(kid=kid_for(public), public=public_raw(public), private=private)


def _decode(path: Path, data: bytes) -> _File:
    try:
        state = msgspec.json.decode(data, type=_File)
    except msgspec.DecodeError as exc:
        raise KeyFileError(f"key file {path} is malformed: {exc}") from None
    if state.version != FORMAT_VERSION:
        raise KeyFileError(f"key file {path} has unsupported version {state.version}")
    for entry in state.keys:
        if len(entry.public) != 32 or kid_for(_public(entry)) != entry.kid:
            raise KeyFileError(f"key file {path}: kid {entry.kid!r} does not match its key")
    _signing_key_of(path, state)
    return state


def _public(entry: _Entry) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(entry.public)


def _signing_key_of(path: Path, state: _File) -> Ed25519PrivateKey:
    """The current entry's private key, checked against its public half."""
    current = [e for e in state.keys if e.kid == state.current]
    if len(current) != 1 or current[0].private is None or len(current[0].private) != 32:
        raise KeyFileError(f"key file {path} has no private key for its current kid")
    key = Ed25519PrivateKey.from_private_bytes(current[0].private)
    if public_raw(key.public_key()) != current[0].public:
        raise KeyFileError(f"key file {path}: private key does not match kid {state.current!r}")
    return key


class Keyring:
    """Signing keys persisted in ``<directory>/signing-keys.json`` (mode 0600)."""

    def __init__(self, path: Path, state: _File) -> None:
        self._path = path
        self._state = state
        self._signing = _signing_key_of(path, state)

    @classmethod
    def create(cls, directory: Path) -> Keyring:
        """Create the key file with a first key; refuse if it already exists."""
        path = Path(directory) / KEYRING_FILE
        entry = _new_entry()
        state = _File(version=FORMAT_VERSION, current=entry.kid, keys=[entry])
        keyfiles.create_secret_file(path, msgspec.json.encode(state))
        return cls(path, state)

    @classmethod
    def load(cls, directory: Path) -> Keyring:
        path = Path(directory) / KEYRING_FILE
        return cls(path, _decode(path, keyfiles.read_secret_file(path)))

    @classmethod
    def load_or_create(cls, directory: Path) -> Keyring:
        """What ``dtf up`` does: load the data dir's keyring, creating it the first time."""
        path = Path(directory) / KEYRING_FILE
        if path.exists() or path.is_symlink():
            return cls.load(directory)
        return cls.create(directory)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def current_kid(self) -> str:
        return self._state.current

    @property
    def kids(self) -> list[str]:
        return [e.kid for e in self._state.keys]

    @property
    def retired(self) -> frozenset[str]:
        return frozenset(self._state.retired)

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        return self._state.current, self._signing

    def public_keys(self) -> PublicKeys:
        keys = {e.kid: e.public for e in self._state.keys}
        return PublicKeys(current=self.current_kid, keys=keys, retired=self.retired)

    def verification_key(self, kid: str) -> Ed25519PublicKey:
        return self.public_keys().verification_key(kid)

    def rotate(self) -> str:
        """Add a new current key, persist, and return its kid; old kids still verify."""
        entry = _new_entry()
        old = [msgspec.structs.replace(e, private=None) for e in self._state.keys]
        state = msgspec.structs.replace(self._state, current=entry.kid, keys=[*old, entry])
        self._save(state)
        return entry.kid

    def retire(self, kid: str) -> None:
        """Stop accepting tokens signed with ``kid``; the current kid cannot be retired."""
        if kid == self.current_kid:
            raise KeyFileError(f"cannot retire the current key {kid!r}: rotate first")
        if kid not in self.kids:
            raise KeyFileError(f"cannot retire unknown key id {kid!r}")
        keys = [e for e in self._state.keys if e.kid != kid]
        retired = sorted({*self._state.retired, kid})
        self._save(msgspec.structs.replace(self._state, keys=keys, retired=retired))

    def _save(self, state: _File) -> None:
        signing = _signing_key_of(self._path, state)
        keyfiles.replace_secret_file(self._path, msgspec.json.encode(state))
        self._state = state
        self._signing = signing
