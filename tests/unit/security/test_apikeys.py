"""Worker API keys: shown once, stored as a salted scrypt hash, verified in constant time."""

from __future__ import annotations

import base64

import msgspec
import pytest

from agents.auth.apikeys import (
    SCRYPT_N,
    ApiKeyRecord,
    create_api_key,
    issue_worker_token,
    parse_api_key,
    verify_api_key,
)
from agents.auth.errors import Unauthenticated
from agents.auth.keyring import Keyring
from agents.auth.roles import Role
from agents.auth.tokens import verify
from dtf_core.errors import InvalidInput
from tests.unit.security.crafting import NOW, TTL


@pytest.fixture(scope="module")
def new_key() -> tuple[str, ApiKeyRecord]:
    return create_api_key("w1")


def test_format_and_record(new_key: tuple[str, ApiKeyRecord]) -> None:
    plaintext, record = new_key
    prefix, key_id, secret = plaintext.split("_", 2)
    assert (prefix, key_id) == ("dtfk", record.key_id)
    assert len(secret) == 43
    assert (record.worker_id, record.role, record.scheme, record.n) == ("w1", Role.WORKER,
                                                                        "scrypt", SCRYPT_N)
    assert parse_api_key(plaintext) == record.key_id


def test_verify_by_mapping_or_callable(new_key: tuple[str, ApiKeyRecord]) -> None:
    plaintext, record = new_key
    assert verify_api_key(plaintext, {record.key_id: record}) == record
    assert verify_api_key(plaintext, lambda key_id: record if key_id == record.key_id else None)


def test_the_record_at_rest_holds_no_secret(new_key: tuple[str, ApiKeyRecord]) -> None:
    plaintext, record = new_key
    stored = msgspec.json.encode(record) + msgspec.msgpack.encode(record)
    secret = plaintext.split("_", 2)[2]
    for fragment in (secret, secret[:12], secret[-12:]):
        assert fragment.encode() not in stored
    assert base64.b64decode(base64.urlsafe_b64encode(secret.encode())) not in stored


def test_salts_differ_per_key() -> None:
    _, a = create_api_key("w1")
    _, b = create_api_key("w1")
    assert a.salt != b.salt and a.hash != b.hash and a.key_id != b.key_id


@pytest.mark.parametrize("tamper", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
    lambda k: k[:5] + "0000000000000000" + k[21:],
    lambda k: k.replace("dtfk_", "dtfx_"),
    lambda k: k + "A",
    lambda k: k[:-1],
    lambda k: k.upper(),
], ids=["wrong-secret", "wrong-keyid", "wrong-prefix", "long-secret", "short-secret", "upper"])
def test_wrong_or_tampered_keys_are_refused(new_key: tuple[str, ApiKeyRecord], tamper) -> None:  # type: ignore[no-untyped-def]
    plaintext, record = new_key
    with pytest.raises(Unauthenticated, match="api key rejected"):
        verify_api_key(tamper(plaintext), {record.key_id: record})


@pytest.mark.parametrize("garbage", ["", "dtfk", "dtfk__", "dtfk_a_b", "dtfk_../x_" + "a" * 43,
                                     "x" * 10_000, None, b"dtfk_a_b"], ids=repr)
def test_garbage_keys_are_refused(garbage: object) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        verify_api_key(garbage, {})  # type: ignore[arg-type]


def test_a_record_under_another_key_id_is_refused(new_key: tuple[str, ApiKeyRecord]) -> None:
    plaintext, record = new_key
    other_plain, other = create_api_key("w2")
    with pytest.raises(Unauthenticated):
        verify_api_key(other_plain, {other.key_id: record})
    with pytest.raises(Unauthenticated):
        verify_api_key(plaintext, lambda _: other)


@pytest.mark.parametrize("change", [{"n": 2}, {"scheme": "md5"}, {"r": 1}, {"salt": b""},
                                    {"hash": b"x"}], ids=repr)
def test_weakened_records_are_refused(new_key: tuple[str, ApiKeyRecord], change: dict[str, object]
                                      ) -> None:
    plaintext, record = new_key
    weak = msgspec.structs.replace(record, **change)
    with pytest.raises(Unauthenticated, match="unsupported hashing"):
        verify_api_key(plaintext, {record.key_id: weak})


def test_create_validates_the_worker_id() -> None:
    with pytest.raises(InvalidInput):
        create_api_key("w.1")


def test_exchange_for_a_worker_token(keyring: Keyring, new_key: tuple[str, ApiKeyRecord]) -> None:
    plaintext, record = new_key
    found = verify_api_key(plaintext, {record.key_id: record})
    token = issue_worker_token(keyring, found, now=NOW, ttl=TTL, jti="j1")
    claims = verify(token, keyring, now=NOW)
    assert (claims.sub, claims.role, claims.wid) == ("w1", Role.WORKER, "w1")
