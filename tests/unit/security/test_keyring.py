"""The keyring file: created once with mode 0600, refused when others can read it."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agents.auth import keyfiles
from agents.auth.errors import KeyFileError, Unauthenticated
from agents.auth.keyring import KEYRING_FILE, Keyring, PublicKeys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_a_0600_file_in_a_0700_dir(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        keyring = Keyring.create(tmp_path / "keys")
    finally:
        os.umask(old_umask)
    assert keyring.path == tmp_path / "keys" / KEYRING_FILE
    assert mode(keyring.path) == 0o600
    assert mode(keyring.path.parent) == 0o700
    assert [p.name for p in keyring.path.parent.iterdir()] == [KEYRING_FILE]


def test_create_refuses_to_overwrite(keyring: Keyring) -> None:
    with pytest.raises(KeyFileError, match="already exists"):
        Keyring.create(keyring.path.parent)
    assert Keyring.load(keyring.path.parent).current_kid == keyring.current_kid


def test_load_or_create_generates_once(tmp_path: Path) -> None:
    first = Keyring.load_or_create(tmp_path)
    second = Keyring.load_or_create(tmp_path)
    assert first.current_kid == second.current_kid
    assert first.signing_key()[1].public_key() == second.signing_key()[1].public_key()


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o610])
def test_load_refuses_group_or_other_bits(keyring: Keyring, bad_mode: int) -> None:
    keyring.path.chmod(bad_mode)
    with pytest.raises(KeyFileError, match=f"has mode 0{bad_mode:o}.*chmod 600"):
        Keyring.load(keyring.path.parent)


def test_load_accepts_0400(keyring: Keyring) -> None:
    keyring.path.chmod(0o400)
    assert Keyring.load(keyring.path.parent).current_kid == keyring.current_kid


def test_load_refuses_a_symlink(keyring: Keyring, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / KEYRING_FILE).symlink_to(keyring.path)
    with pytest.raises(KeyFileError, match="cannot open key file"):
        Keyring.load(other)


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        Keyring.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"{}", b"not json", b'{"version":2,"current":"x",'
                                     b'"keys":[]}'])
def test_load_refuses_malformed_files(keyring: Keyring, content: bytes) -> None:
    keyring.path.write_bytes(content)
    with pytest.raises(KeyFileError, match="key file"):
        Keyring.load(keyring.path.parent)


def test_load_refuses_a_kid_that_does_not_match_its_key(keyring: Keyring) -> None:
    state = json.loads(keyring.path.read_bytes())
    state["keys"][0]["kid"] = "forged"
    state["current"] = "forged"
    keyring.path.write_text(json.dumps(state))
    with pytest.raises(KeyFileError, match="does not match"):
        Keyring.load(keyring.path.parent)


def test_rotate_persists_and_keeps_only_the_current_private_key(keyring: Keyring) -> None:
    old = keyring.current_kid
    new = keyring.rotate()
    assert mode(keyring.path) == 0o600
    state = json.loads(keyring.path.read_bytes())
    assert state["current"] == new
    private = {e["kid"]: e.get("private") for e in state["keys"]}
    assert private[old] is None and private[new] is not None
    assert Keyring.load(keyring.path.parent).kids == [old, new]
    assert [p.name for p in keyring.path.parent.iterdir()] == [KEYRING_FILE]


def test_retire_refuses_current_and_unknown(keyring: Keyring) -> None:
    with pytest.raises(KeyFileError, match="rotate first"):
        keyring.retire(keyring.current_kid)
    with pytest.raises(KeyFileError, match="unknown key id"):
        keyring.retire("nope")


def test_public_export_holds_no_private_key(keyring: Keyring) -> None:
    state = json.loads(keyring.path.read_bytes())
    private_b64 = state["keys"][0]["private"]
    private_raw = base64.b64decode(private_b64)
    exported = keyring.public_keys().to_json()
    assert private_b64.encode() not in exported
    assert private_raw not in exported
    assert set(json.loads(exported)) == {"current", "keys", "retired"}


def test_public_keys_report_retired_and_unknown_kids(keyring: Keyring) -> None:
    old = keyring.current_kid
    keyring.rotate()
    keyring.retire(old)
    public = PublicKeys.from_json(keyring.public_keys().to_json())
    assert public.retired == {old}
    with pytest.raises(Unauthenticated, match="retired"):
        public.verification_key(old)
    with pytest.raises(Unauthenticated, match="unknown key id"):
        public.verification_key("zzz")


@pytest.mark.parametrize("data", [b"[]", b'{"current":"a","keys":{"a":"AAAA"}}',
                                  b'{"current":"b","keys":{}}',
                                  b'{"current":"a/b","keys":{"a/b":"' + b"A" * 44 + b'"}}'])
def test_public_keys_from_json_refuses_bad_sets(data: bytes) -> None:
    with pytest.raises(KeyFileError, match="invalid public key set"):
        PublicKeys.from_json(data)


def test_private_key_file_created_once_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "worker" / "result-signing.pem"
    key = keyfiles.load_or_create_private_key_file(path)
    assert mode(path) == 0o600
    again = keyfiles.load_or_create_private_key_file(path)
    assert again.public_key() == key.public_key()
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="mode 0644"):
        keyfiles.load_private_key_file(path)


def test_private_key_file_refuses_garbage_and_non_ed25519(tmp_path: Path) -> None:
    keyfiles.create_secret_file(tmp_path / "bad.pem", b"-----BEGIN PRIVATE KEY-----\nxx\n")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        keyfiles.load_private_key_file(tmp_path / "bad.pem")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    keyfiles.create_secret_file(tmp_path / "rsa.pem", pem)
    with pytest.raises(KeyFileError, match="not hold an Ed25519 key"):
        keyfiles.load_private_key_file(tmp_path / "rsa.pem")
