"""Fixtures: a keyring in a temporary data dir, and a token it signed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.auth.keyring import Keyring
from agents.auth.tokens import issue
from tests.unit.security.crafting import NOW, TTL


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.create(tmp_path / "keys")


@pytest.fixture
def token(keyring: Keyring) -> str:
    return issue(keyring, sub="alice", role="manager", ttl=TTL, now=NOW, jti="j1")
