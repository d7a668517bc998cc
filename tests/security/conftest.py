"""The `insider` fixture: a real secure stack, as `dtf up --workers 1` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.nats.connect import connect
from agents.wire.client import ApiClient
from tests.dist import secure_stack
from tests.security.insider import Insider


@pytest.fixture
async def insider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Insider]:
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with secure_stack(tmp_path, workers=1) as dist:
        nc = await connect(dist.url, "test-admin", reconnect=False, credential=dist.token)
        try:
            yield Insider(dist, nc, ApiClient(nc, credential=dist.token))
        finally:
            await nc.close()
