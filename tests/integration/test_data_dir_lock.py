"""One stack per data dir: a second `dtf up` on it is refused with one clear line that
names the running one (two nats-servers on one JetStream store risk corrupting it)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from agents.nats.server import free_port
from tests.dist import secure_stack

pytestmark = pytest.mark.anyio


async def test_a_second_dtf_up_on_a_data_dir_in_use_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Said first, before a port the running stack holds: its REST API's port, taken here
    by a socket of the test's own."""
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        text = await second_up(tmp_path, taken.getsockname()[1])
    assert "in use by a running dtf up" in text and f"pid {os.getpid()}" in text
    assert "Traceback" not in text


async def second_up(tmp_path: Path, http_port: int) -> str:
    """What a second `dtf up` on a running stack's data dir says."""
    async with secure_stack(tmp_path, workers=0) as dist:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "up", "--data-dir", str(tmp_path / "stack"),
            "--port", str(free_port()), "--http-port", str(http_port),
            env={**os.environ},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        text = err.decode()
        assert proc.returncode == 2, text
        assert dist.url.split(",")[0] in text
        return text
