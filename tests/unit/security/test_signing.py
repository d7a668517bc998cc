"""Result signing: a report signed by a worker's key verifies only unchanged, under that key."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.auth.errors import Unauthenticated
from agents.auth.signing import (
    canonical_bytes,
    public_key_bytes,
    public_key_from_bytes,
    sign,
    verify_signature,
)


class FakeReport(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    fencing: int
    outcome: str
    extra: dict[str, int] = {}


REPORT = FakeReport(task_id="t1", attempt=1, fencing=42, outcome="succeeded",
                    extra={"b": 2, "a": 1})


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_roundtrip_through_registered_public_bytes(key: Ed25519PrivateKey) -> None:
    payload = canonical_bytes(REPORT)
    signature = sign(key, payload)
    registered = public_key_from_bytes(public_key_bytes(key.public_key()))
    verify_signature(registered, payload, signature)


def test_canonical_bytes_are_deterministic() -> None:
    reordered = FakeReport(task_id="t1", attempt=1, fencing=42, outcome="succeeded",
                           extra={"a": 1, "b": 2})
    assert canonical_bytes(REPORT) == canonical_bytes(reordered)


@pytest.mark.parametrize("field", [{"outcome": "failed"}, {"fencing": 43}, {"attempt": 2},
                                   {"task_id": "t2"}], ids=repr)
def test_a_changed_report_is_refused(key: Ed25519PrivateKey, field: dict[str, object]) -> None:
    signature = sign(key, canonical_bytes(REPORT))
    changed = canonical_bytes(msgspec.structs.replace(REPORT, **field))
    with pytest.raises(Unauthenticated, match="does not match"):
        verify_signature(key.public_key(), changed, signature)


def test_a_flipped_bit_or_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    payload = canonical_bytes(REPORT)
    signature = sign(key, payload)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(Unauthenticated):
        verify_signature(key.public_key(), payload, flipped)
    with pytest.raises(Unauthenticated):
        verify_signature(Ed25519PrivateKey.generate().public_key(), payload, signature)


def test_a_signature_for_another_context_is_refused(key: Ed25519PrivateKey) -> None:
    payload = canonical_bytes(REPORT)
    signature = sign(key, payload, context=b"dtf.other.v1")
    with pytest.raises(Unauthenticated):
        verify_signature(key.public_key(), payload, signature)
    verify_signature(key.public_key(), payload, signature, context=b"dtf.other.v1")


@pytest.mark.parametrize("signature", [b"", b"x" * 63, b"x" * 65, "x" * 64], ids=repr)
def test_malformed_signatures_are_refused(key: Ed25519PrivateKey, signature: bytes) -> None:
    with pytest.raises(Unauthenticated, match="wrong length"):
        verify_signature(key.public_key(), b"payload", signature)


def test_public_key_bytes_must_be_32() -> None:
    with pytest.raises(Unauthenticated, match="32 bytes"):
        public_key_from_bytes(b"x" * 31)
