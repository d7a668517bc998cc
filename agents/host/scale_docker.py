"""The autoscaler's ``docker`` provider: one container per worker (`docker run` / `docker stop`).

Argv lists only; the worker's credential goes to `docker run` by name (``-e DTF_TOKEN``) from
the environment of the docker client, never on a command line another user could read.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence

from agents.host.scale_local import IssueToken
from dtf_core.errors import DTFError
from dtf_core.ids import validate_id

STOP_TIMEOUT_S = 15
CALL_TIMEOUT_S = 120.0


async def docker(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the docker client; its stdout, or a DTFError with its stderr."""
    exe = shutil.which("docker")
    if exe is None:
        raise DTFError("the docker client is not installed")
    proc = await asyncio.create_subprocess_exec(
        exe, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CALL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DTFError(f"docker {args[0]} did not answer in {CALL_TIMEOUT_S:.0f}s") from None
    if proc.returncode != 0:
        raise DTFError(f"docker {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace").strip()


class DockerProvider:
    name = "docker"

    def __init__(self, *, image: str, server: str, group: str, issue_token: IssueToken,
                 slots: int | None = None, network: str = "host") -> None:
        self.image = image
        self.server = server
        self.group = validate_id(group, "worker group")
        self.issue_token = issue_token
        self.slots = slots
        self.network = network
        self.containers: set[str] = set()

    def run_argv(self, worker_id: str, with_token: bool) -> list[str]:
        argv = ["run", "-d", "--rm", "--name", f"dtf-{worker_id}", "--network", self.network]
        argv += ["-e", "DTF_TOKEN"] if with_token else []
        argv += [self.image, "dtf", "worker", "--id", worker_id, "--group", self.group,
                 "--server", self.server]
        return argv + (["--slots", str(self.slots)] if self.slots else [])

    async def start(self, worker_ids: Sequence[str]) -> list[str]:
        started = []
        for wid in worker_ids:
            validate_id(wid, "worker id")
            token = await self.issue_token(wid)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DTF_TOKEN")}
            if token is not None:
                env["DTF_TOKEN"] = token
            await docker(*self.run_argv(wid, token is not None), env=env)
            self.containers.add(wid)
            started.append(wid)
        return started

    async def stop(self, worker_ids: Sequence[str]) -> None:
        for wid in worker_ids:
            await docker("stop", "-t", str(STOP_TIMEOUT_S), f"dtf-{validate_id(wid, 'worker id')}")
            self.containers.discard(wid)

    async def close(self) -> None:
        await self.stop(sorted(self.containers))
