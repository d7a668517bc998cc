"""A DTF stack (control plane, projector, two workers with one slot each) and a helper that
runs `dtf run pytest` on a generated suite as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.jetstream_log import JetStreamLog
from agents.projector import ProjectorAgent
from tests.integration.harness import Harness, stack

RUN_TIMEOUT_S = 90.0


@dataclass
class Dist:
    h: Harness
    tmp: Path

    def suite(self, name: str, files: dict[str, str]) -> Path:
        root = self.tmp / name
        (root / "tests").mkdir(parents=True, exist_ok=True)
        (root / "pytest.ini").write_text("[pytest]\n")
        for rel, text in files.items():
            (root / rel).write_text(textwrap.dedent(text))
        return root

    async def run(self, root: Path, *args: str, env: dict[str, str] | None = None,
                  command: tuple[str, ...] = ("run", "pytest")) -> tuple[int, str]:
        full_env = {**os.environ, "DTF_SERVER": self.h.url,
                    "DTF_DATA_DIR": str(self.tmp / "nodata"), **(env or {})}
        full_env.pop("PYTEST_ADDOPTS", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", *command, *args, cwd=root, env=full_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            raise
        return proc.returncode or 0, out.decode()

    async def plain(self, root: Path, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, cwd=root,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()


@pytest.fixture
async def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dist]:
    monkeypatch.setenv("DTF_CACHE_DIR", str(tmp_path / "cache"))
    async with stack(tmp_path, workers=2, slots=1, control=True) as h:
        nc = await h.conn("projector")
        projector = ProjectorAgent(nc, JetStreamLog(nc), tmp_path / "dtf.duckdb")
        await h.start("projector", projector)
        yield Dist(h, tmp_path)
