"""A secure DTF stack as `dtf up` runs it (control plane, projector, worker processes with
one slot each) and a helper that runs `dtf` (`dtf run pytest` by default) against it."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from agents.host.supervisor import Stack
from agents.nats.server import free_port

RUN_TIMEOUT_S = 90.0


@dataclass
class Dist:
    url: str
    token: str
    tmp: Path
    http: str | None = None  # the REST API's URL, where the stack runs one

    def suite(self, name: str, files: dict[str, str]) -> Path:
        root = self.tmp / name
        (root / "tests").mkdir(parents=True, exist_ok=True)
        (root / "pytest.ini").write_text("[pytest]\n")
        for rel, text in files.items():
            (root / rel).write_text(textwrap.dedent(text))
        return root

    async def run(self, root: Path, *args: str, env: dict[str, str] | None = None,
                  command: tuple[str, ...] = ("run", "pytest")) -> tuple[int, str]:
        full_env = {**os.environ, "DTF_SERVER": self.url, "DTF_TOKEN": self.token,
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


@asynccontextmanager
async def secure_stack(tmp: Path, workers: int = 2, task_user: str | None = None,
                       http: bool = False) -> AsyncIterator[Dist]:
    """What `dtf up --workers 2 --slots 1 --no-http` runs: secure (auth callout, per-role
    server permissions), control plane, projector and two worker processes; ``http``:
    and the HTTP agent, on a free port (``Dist.http``)."""
    stack = Stack(data_dir=tmp / "stack", port=free_port(), workers=workers, slots=1,
                  task_user=task_user, http_port=free_port() if http else None)
    supervisor: asyncio.Task[None] | None = None
    try:  # a start that fails half-way stops what it started too
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        await stack.wait_ready()
        assert stack.creds is not None
        yield Dist(stack.url, stack.creds.admin.read_text().strip(), tmp, stack.http_url)
    finally:
        if supervisor is not None:
            supervisor.cancel()
        await stack.stop()
