"""Fuzzing verify: whatever comes in, the only error that comes out is Unauthenticated."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.auth.errors import Unauthenticated
from agents.auth.jws import b64url_encode
from agents.auth.keyring import Keyring
from agents.auth.tokens import verify
from tests.unit.security.crafting import NOW, craft, good_header

fuzz = settings(max_examples=300)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
b64_part = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.",
            max_size=60),
    json_values.map(lambda v: b64url_encode(json.dumps(v).encode())),
    st.binary(max_size=64).map(b64url_encode),
)
claim_names = st.sampled_from(["iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti", "wid"])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.create(tmp_path_factory.mktemp("fuzzkeys"))


def refused(token: object, keys: Keyring) -> None:
    with pytest.raises(Unauthenticated):
        verify(token, keys, now=NOW)  # type: ignore[arg-type]


@fuzz
@given(token=st.one_of(st.text(), st.binary()))
def test_random_text_and_bytes(keys: Keyring, token: str | bytes) -> None:
    refused(token, keys)


@fuzz
@given(parts=st.lists(b64_part, min_size=1, max_size=5))
def test_random_dotted_parts(keys: Keyring, parts: list[str]) -> None:
    refused(".".join(parts), keys)


@fuzz
@given(header=st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit"]), json_values),
       claims=json_values, sig=st.binary(max_size=80))
def test_random_headers_and_claims(
    keys: Keyring, header: dict[str, object], claims: object, sig: bytes
) -> None:
    token = ".".join(b64url_encode(json.dumps(p).encode()) for p in (header, claims))
    refused(f"{token}.{b64url_encode(sig)}", keys)


@fuzz
@given(claims=st.one_of(json_values, st.dictionaries(claim_names, json_values)))
def test_random_claims_under_a_valid_signature(keys: Keyring, claims: object) -> None:
    token = craft(good_header(keys.current_kid), claims, keys.signing_key()[1])  # type: ignore[arg-type]
    refused(token, keys)
