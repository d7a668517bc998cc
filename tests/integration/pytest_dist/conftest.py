"""The `dist` fixture: a secure stack with two workers (tests/dist.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.dist import Dist, secure_stack


@pytest.fixture
async def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dist]:
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))  # the workers inherit it
    async with secure_stack(tmp_path) as d:
        yield d
collect_ignore = ["nasty"]  # a suite of its own, run by test_equivalence.py
